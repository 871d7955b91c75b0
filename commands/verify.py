"""`verify`: run verifiers on their own over existing solutions, with no policy model.

Sources: a finished (or imported) run's labelled paths, generated formal-logic problems with planted wrong steps
(`domains.logic`), or HumanEval-format programs with PRLCoder mutations (`domains.code`). Each configured
verifier adds its `<name>_labels`/`<name>_reasons` columns; where the source carries reference labels (planted
errors, mutation outcomes, a run's own labels) the first-error agreement is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from annotators.labelling import attach_verdicts, make_verifier, verifier_columns
from schemas import tables
from schemas.records import Problem, path_id
from schemas.tables import table_bytes
from storage import atomic_write
from transforms.dead_letters import contain
from transforms.write import dead_letter_sort_key


def _row(problem: dict[str, Any], steps: list[str], labels: list[bool], source: str, **extra: Any) -> dict[str, Any]:
    first = next((i for i, ok in enumerate(labels) if not ok), -1)
    return {
        "id": path_id(problem["problem_id"] + extra.pop("suffix", ""), steps),
        "problem_id": problem["problem_id"],
        "source": source,
        "prompt": problem["question"],
        "completions": steps,
        "labels": labels,
        "first_error_index": first,
        "label_policy": extra.pop("label_policy"),
        "gold_answer": problem.get("answer"),
        "search": "none",
        "schema_version": tables.SCHEMA_VERSION,
        "meta": json.dumps(extra, sort_keys=True),
    }


def logic_rows(n: int, seed: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Generated FoVer-style problems; reference labels True before the planted error, False from it on."""
    from domains.logic import generate_logic_problems

    out = []
    for problem in generate_logic_problems(n, seed):
        steps = list(problem["meta"]["solution_steps"])
        planted = problem["meta"]["planted_error_index"]
        labels = [planted < 0 or i < planted for i in range(len(steps))]
        out.append((problem, _row(problem, steps, labels, "logic-generated", label_policy="planted", planted=planted)))
    return out


def code_rows(limit: int | None, seed: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Canonical solutions (all lines True) and one failing PRLCoder mutation per task, labelled by its tests."""
    from annotators.verifiers.code_labels import mutation_labels
    from domains.code import HUMANEVAL_PATH, builtin_tasks, load_humaneval

    problems = builtin_tasks() + (load_humaneval(limit=limit) if HUMANEVAL_PATH.exists() else [])
    out = []
    for problem in problems:
        lines = [line for line in problem["answer"].splitlines() if line.strip()]
        out.append((problem, _row(problem, lines, [True] * len(lines), "code-canonical", label_policy="tests pass")))
        mutations = mutation_labels(
            Problem.from_dict(problem), lines, seed=seed, mutations_per_line=1, refactors_per_line=0
        )
        failing = [v for v in mutations.variants if any(label.verdict is False for label in v.labels)]
        if failing:
            v = failing[0]
            labels = [label.verdict is not False for label in v.labels[: v.line_index + 1]]
            row = _row(problem, list(v.lines[: v.line_index + 1]), labels, "code-mutation", suffix=f"/{v.rule}",
                       label_policy="prlcoder mutation", rule=v.rule, line_index=v.line_index)  # fmt: skip
            out.append((problem, row))
    return out


def stored_rows(path: Path, schema: pa.Schema) -> list[dict[str, Any]]:
    """The rows of one Parquet file of a run, or TableError (`<file>: <reason>`) when it is not a readable Parquet
    file (truncated, say) or its columns are not `schema`'s."""
    try:
        table = pq.ParquetFile(path).read()
    except Exception as error:  # noqa: BLE001 - whatever the cause, the file cannot be used
        raise tables.TableError(f"{path}: not a readable Parquet file ({error})") from None
    if mismatch := tables.schema_mismatch(table.schema, schema):
        raise tables.TableError(f"{path}: {mismatch}")
    return table.to_pylist()


def run_rows(run: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """A run's labelled paths with their problems (meta from evidence/problems when the run has it)."""
    rows = [r for p in sorted((run / "data").glob("train-*.parquet")) for r in stored_rows(p, tables.PATHS)]
    problems = {}
    for path in sorted((run / "evidence" / "problems").glob("part-*.parquet")):
        for p in stored_rows(path, tables.PROBLEMS):
            problems[p["problem_id"]] = {**p, "meta": json.loads(p["meta"] or "{}")}
    out = []
    for row in rows:
        problem = problems.get(row["problem_id"]) or {
            "problem_id": row["problem_id"], "question": row["prompt"], "answer": row.get("gold_answer") or "",
            "domain": "math", "source": row.get("source") or "", "meta": {},
        }  # fmt: skip
        out.append((problem, row))
    return out


def _verdict_columns(problem: dict[str, Any], row: dict[str, Any], built: dict[str, Any]) -> dict[str, Any]:
    """Every verifier's `<name>_labels`/`<name>_reasons` for one row (the row itself is left as it is)."""
    columns: dict[str, Any] = {"completions": list(row["completions"])}
    for name, verifier in built.items():
        attach_verdicts(columns, name, verifier.verify(Problem.from_dict(problem), list(row["completions"])))
    del columns["completions"]
    return columns


def verify_rows(
    pairs: list[tuple[dict[str, Any], dict[str, Any]]],
    verifiers: list[str],
    dead_letters: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Add each verifier's columns to every row and score first-error agreement against the row's labels.

    A row whose verification raises gets no column and no score; with `dead_letters`, its dead letter (stage
    `verify`, with the reason) is appended there, and the other rows go on.
    """
    built = {name: make_verifier(name, {}) for name in verifiers}
    scores: dict[str, list[int]] = {name: [0, 0] for name in verifiers}
    for problem, row in pairs:
        checked = contain("verify", lambda p=problem, r=row: [_verdict_columns(p, r, built)], row["source"], row)
        if checked.dead is not None:
            if dead_letters is not None:
                dead_letters.append(checked.dead)
            continue
        row.update(checked.outputs[0])
        for name in built:
            flagged = next((i for i, v in enumerate(row[f"{name}_labels"]) if v is False), -1)
            scores[name][0] += int(flagged == row["first_error_index"])
            scores[name][1] += 1
    return {name: {"first_error_agreement": round(a / n, 4) if n else None, "n": n} for name, (a, n) in scores.items()}


def write(output: Path, rows: list[dict[str, Any]], verifiers: list[str], report: dict[str, Any]) -> None:
    schema = tables.paths_schema([c for name in sorted(verifiers) for c in verifier_columns(name)])
    rows = sorted(rows, key=lambda r: r["id"])
    full = [{name: r.get(name) for name in schema.names} for r in rows]
    atomic_write(str(output / "data" / "train-00000-of-00001.parquet"), table_bytes(full, schema, "zstd", 1000))
    (output / "manifest.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def cmd_verify(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    verifiers = [v.strip() for v in args.annotators.split(",") if v.strip()]
    if args.source == "logic":
        pairs = logic_rows(args.n, args.seed)
    elif args.source == "code":
        pairs = code_rows(args.n, args.seed)
    else:
        from pipelines.manifest import finished_run

        try:
            pairs = run_rows(finished_run(args.source, "verify"))
        except tables.TableError as error:  # a truncated or retyped file of the run: named, no traceback
            print(f"verify failed: {error}", file=sys.stderr)
            return 2
    dead: list[dict[str, str]] = []
    scores = verify_rows(pairs, verifiers, dead)
    dead_ids = {json.loads(letter["row"])["id"] for letter in dead}
    kept = [row for _, row in pairs if row["id"] not in dead_ids]
    report = {
        "command": "verify",
        "source": args.source,
        "rows": len(pairs),
        "dead_lettered": len(dead),
        "balanced": len(pairs) == len(kept) + len(dead),
        "verifiers": scores,
    }
    write(Path(args.output), kept, verifiers, report)
    dead.sort(key=dead_letter_sort_key)
    payload = "".join(json.dumps(d, sort_keys=True, ensure_ascii=False) + "\n" for d in dead).encode()
    atomic_write(str(Path(args.output) / "dead_letters" / "dead_letters.jsonl"), payload)
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0


def add_verify_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser("verify", help="run verifiers on their own over existing or generated solutions")
    parser.add_argument("source", help="a run folder, or `logic` / `code` for generated problems with planted errors")
    parser.add_argument("--annotators", default="arithmetic", help="comma-separated: arithmetic, logic, code")
    parser.add_argument("--output", required=True, help="folder for data/train-*.parquet and manifest.json")
    parser.add_argument("-n", type=int, default=50, help="generated problems (logic) or HumanEval tasks (code)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=cmd_verify)
