"""Print the walk of one problem through a finished run, stage by stage, as Markdown (docs/architecture.md).

    .venv/bin/python scripts/walk_problem.py RUN [--problem ID]

Reads only what the run wrote: the evidence tables, the shards, `filtered/`, the dead letters and the manifest.
Without --problem, the first problem (by id) that has a labelled path.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rows(run: Path, folder: str, problem_id: str) -> list[tuple[str, dict]]:
    import pyarrow.parquet as pq

    out = []
    for path in sorted((run / folder).glob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            if row.get("problem_id") == problem_id:
                out.append((str(path.relative_to(run)), row))
    return out


def walk(run: Path, problem_id: str | None) -> str:
    from engines.prompts import PromptRenderer
    from schemas.config import config_from_dict
    from transforms.write import shard_of

    manifest = json.loads((run / "manifest.json").read_text())
    config = config_from_dict(manifest["config"])
    if problem_id is None:
        labelled = sorted({r["problem_id"] for _, r in _rows_all(run, "data")})
        problem_id = labelled[0]
    lines = [
        f"### The walk of `{problem_id}` through `{run.name}` ({config.search.method}, seed {config.run.seed})",
        "",
    ]
    (_, problem), *_ = _rows(run, "evidence/problems", problem_id)
    lines += [
        "**Read** (`transforms/read.py`): the input row became a problem:",
        "",
        f"    question: {problem['question']!r}   answer: {problem['answer']!r}   domain: {problem['domain']}",
        "",
    ]
    prompt = PromptRenderer(config.policy).render(problem["question"])
    lines += ["**Search** (`transforms/search.py`, `annotators/mc.py`): the rendered prompt", "", f"    {prompt!r}", ""]
    solutions = [r for _, r in _rows(run, "evidence/solutions", problem_id)]
    completions = defaultdict(list)
    for _, c in _rows(run, "evidence/completions", problem_id):
        completions[(c["solution_index"], c["step_index"])].append(c["correct"])
    lines.append(
        f"{len(solutions)} sampled solutions (per-request seeds), each cut into steps; then k completions "
        "from every step prefix:"
    )
    lines.append("")
    for s in sorted(solutions, key=lambda s: s["solution_index"]):
        lines.append(
            f"- solution {s['solution_index']} (seed {s['seed']}, {s['n_tokens']} tokens, answer "
            f"{s['final_answer']!r}: {'right' if s['outcome_correct'] else 'wrong'})"
        )
        for t, step in enumerate(s["steps"]):
            got = completions.get((s["solution_index"], t))
            tally = f"{sum(bool(c) for c in got)}/{len(got)} completions right" if got else "its own answer"
            lines.append(f"    - step {t}: {step!r}: {tally}")
    lines.append("")
    for label, folder in (("Label, filter, augment and write", "data"), ("Filtered", "filtered")):
        rows = _rows(run, folder, problem_id)
        if not rows:
            continue
        lines.append(
            f"**{label}** (`transforms/label.py`, `transforms/filter.py`, `transforms/write.py`): "
            f"{len(rows)} rows in `{folder}/`"
        )
        lines.append("")
        for path, row in sorted(rows, key=lambda item: item[1]["id"]):
            shard = shard_of(row["id"], config.output.num_shards)
            extra = f", dropped: {row['drop_reason']!r}" if "drop_reason" in row else ""
            lines.append(
                f"- `{path}` (shard {shard} = sha256(id) mod {config.output.num_shards}), id `{row['id']}`: "
                f"labels {row['labels']}, mc_values {[round(v, 3) for v in row['mc_values']]}, "
                f"first error {row['first_error_index']}{extra}"
            )
        lines.append("")
    letters = [json.loads(line) for line in (run / "dead_letters" / "dead_letters.jsonl").read_text().splitlines()]
    mine = [d for d in letters if problem_id in d.get("row", "")]
    lines.append(
        f"**Dead letters** of this problem: {len(mine)}" + "".join(f"\n- {d['stage']}: {d['reason']}" for d in mine)
    )
    return "\n".join(lines) + "\n"


def _rows_all(run: Path, folder: str) -> list[tuple[str, dict]]:
    import pyarrow.parquet as pq

    return [(str(p), r) for p in sorted((run / folder).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--problem")
    args = parser.parse_args()
    print(walk(args.run, args.problem), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
