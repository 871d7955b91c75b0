"""`export` and `import`: a run's labelled paths <-> the files PRM trainers and public datasets use.

    python run.py export RUN --format trl|openrlhf|qwen-prm|prm800k|math-shepherd [--soft] [--output DIR]
    python run.py import SRC --format prm800k|math-shepherd --output DIR [--neutral negative|positive|drop]

Export reads `RUN/data/train-*.parquet` and writes one file per input shard to `RUN/exports/<fmt>/`
(`train-0000i-of-0000N.parquet` for TRL and Qwen-PRM, `.jsonl` for OpenRLHF, PRM800K and Math-Shepherd), plus
`export.json` with the counts, including every stated rule applied (`schemas.formats`). The same run and
options give the same bytes. Import writes a run-shaped folder (`data/`, `dead_letters/`, `manifest.json`)
of PATHS rows that the other commands, export included, read like a synthesized run.

Small and local by design: pyarrow and plain files, no Beam pipeline (a run's paths table is the small end).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import formats
from schemas.tables import DEAD_LETTERS, SCHEMA_VERSION, paths_schema
from storage import atomic_write

# format -> (file suffix, Arrow schema for Parquet or None for JSONL, who reads it)
EXPORT_FORMATS: dict[str, tuple[str, pa.Schema | None, str]] = {
    "trl": (".parquet", formats.TRL_SCHEMA, "TRL 1.13.0 PRMTrainer (trl.experimental.prm), docs/methods.md §3.1"),
    "openrlhf": (".jsonl", None, "OpenRLHF v0.4.5-v0.9.5 train_prm (ProcessRewardDataset), docs/methods.md §3.2"),
    "qwen-prm": (".parquet", formats.QWEN_PRM_SCHEMA, "Qwen2.5-Math-PRM messages + <extra_0>, docs/methods.md §3.3"),
    "prm800k": (".jsonl", None, "PRM800K JSONL readers (openai/prm800k schema), docs/methods.md §3.4"),
    "math-shepherd": (".jsonl", None, "Math-Shepherd input/label/task rows, docs/methods.md §2.1"),
}
IMPORT_FORMATS = ("prm800k", "math-shepherd")

# Options each export format accepts (anything else is refused rather than silently ignored).
_FORMAT_OPTIONS = {
    "trl": {"separator", "on_separator"},
    "openrlhf": {"soft", "null_mc", "placeholder"},
    "qwen-prm": set(),
    "prm800k": set(),
    "math-shepherd": {"placeholder"},
}
_DEFAULTS: dict[str, Any] = {
    "separator": formats.TRL_SEPARATOR,
    "on_separator": "replace",
    "soft": False,
    "null_mc": "skip",
    "placeholder": formats.OPENRLHF_PLACEHOLDER,
}


def _jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n" for row in rows).encode()


def _parquet_bytes(rows: list[dict[str, Any]], schema: pa.Schema) -> bytes:
    from schemas.tables import table_bytes  # the run's own writer settings: zstd, fixed row groups, no timestamps

    return table_bytes(rows, schema, "zstd", 1000)


def _converter(fmt: str, options: dict[str, Any]) -> Callable[[dict[str, Any], Counter], dict[str, Any] | None]:
    if fmt == "trl":
        return lambda row, stats: formats.to_trl(row, options["separator"], options["on_separator"], stats=stats)
    if fmt == "openrlhf":
        return lambda row, stats: formats.to_openrlhf(
            row, options["soft"], options["null_mc"], options["placeholder"], stats=stats
        )
    if fmt == "qwen-prm":
        return lambda row, stats: formats.to_qwen_prm(row, stats=stats)
    if fmt == "prm800k":
        return lambda row, stats: formats.to_prm800k(row, stats=stats)
    return lambda row, stats: formats.to_math_shepherd(row, options["placeholder"], stats=stats)


def _step_count(fmt: str, result: dict[str, Any], options: dict[str, Any]) -> int:
    if fmt == "prm800k":
        return len(result["label"]["steps"])
    if fmt == "math-shepherd":
        return result["input"].count(options["placeholder"])
    return len(result["labels"] if "labels" in result else result["label"])


def _resolve_options(fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; one of {sorted(EXPORT_FORMATS)}")
    unknown = set(options) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown export options {sorted(unknown)}")
    misplaced = {k for k, v in options.items() if v != _DEFAULTS[k] and k not in _FORMAT_OPTIONS[fmt]}
    if misplaced:
        raise ValueError(f"options {sorted(misplaced)} do not apply to --format {fmt}")
    resolved = {k: options.get(k, _DEFAULTS[k]) for k in sorted(_FORMAT_OPTIONS[fmt])}
    placeholder = resolved.get("placeholder")
    if placeholder is not None and (
        not isinstance(placeholder, str) or not placeholder.strip() or placeholder != placeholder.strip()
    ):
        raise ValueError(f"placeholder {placeholder!r} must be a non-empty token without surrounding spaces")
    if placeholder in formats.OPENRLHF_REWARD_TOKENS:
        raise ValueError(f"placeholder {placeholder!r} is one of the reward tokens {formats.OPENRLHF_REWARD_TOKENS}")
    return resolved


def _policy_folder(run: Path) -> tuple[str | None, str]:
    """The run's policy model (manifest config.policy.model) when it is a local folder; else (None, why not)."""
    manifest_path = run / "manifest.json"
    if not manifest_path.exists():
        return None, f"{manifest_path} is missing"
    try:
        model = json.loads(manifest_path.read_text())["config"]["policy"]["model"]
    except (ValueError, KeyError, TypeError):
        return None, f"{manifest_path} names no config.policy.model"
    if not isinstance(model, str) or not model:
        return None, f"{manifest_path} names no config.policy.model"
    for folder in (Path(model), Path(__file__).resolve().parent.parent / model):
        if folder.is_dir():
            return str(folder), ""
    return None, f"the run's policy model {model!r} is not a local folder"


def check_placeholder(run: Path, placeholder: str, tokenizer: Any = None) -> dict[str, Any]:
    """OpenRLHF's one-token placeholder rule (`formats.placeholder_problem`) under the tokenizer it will train with.

    `tokenizer` is a loaded tokenizer, a path or hub id, or None for the run's policy model when that is a local
    folder. One named explicitly that does not load is an error; a default that cannot be found or loaded is
    reported as unchecked. A placeholder that is not one token raises ValueError naming the ids and what to pass.
    """
    name = tokenizer if isinstance(tokenizer, str) else None
    if tokenizer is None:
        name, why_not = _policy_folder(run)
        if name is None:
            return {"checked": False, "reason": f"no tokenizer: {why_not}; pass --tokenizer PATH_OR_ID"}
    if isinstance(tokenizer, str) or tokenizer is None:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
        except Exception as error:  # noqa: BLE001 - any loader failure means the same: no tokenizer to check with
            if isinstance(tokenizer, str):
                raise ValueError(f"cannot load tokenizer {name!r}: {error}") from error
            return {"checked": False, "reason": f"no tokenizer: {name!r} does not load ({type(error).__name__})"}
    name = name or type(tokenizer).__name__
    problem = formats.placeholder_problem(tokenizer, placeholder)
    if problem is not None:
        candidates = formats.placeholder_candidates(tokenizer)
        hint = f" (this tokenizer's {', '.join(map(repr, candidates))} would do)" if candidates else ""
        raise ValueError(
            f"{problem} with tokenizer {name}, so OpenRLHF would put the labels in the wrong places; "
            f"choose a placeholder that is one token with --placeholder TOKEN{hint}"
        )
    ids = tokenizer.encode(placeholder, add_special_tokens=False)
    return {"checked": True, "tokenizer": name, "placeholder_id": ids[0]}


def export_run(
    run_dir: str | os.PathLike[str],
    fmt: str,
    output: str | os.PathLike[str] | None = None,
    tokenizer: Any = None,
    **options: Any,
) -> dict:
    """Convert `RUN/data/train-*.parquet` to `fmt` under `output` (default `RUN/exports/<fmt>`); return the counts.

    Options: `separator`, `on_separator` (trl); `soft`, `null_mc`, `placeholder` (openrlhf); `placeholder`
    (math-shepherd). For openrlhf the placeholder is checked first against `tokenizer` (`check_placeholder`;
    the run's policy model by default) and the export refused when OpenRLHF would mis-place it. Shard i of N
    becomes output shard i of N, rows in the same order; skipped rows and every rule application are counted
    (`rows_skipped`, `rules`). A row whose conversion raises is left out and written to `dead_letters.jsonl`
    beside the files with its reason (`rows_dead_lettered`); with `on_separator="error"` a format refusal stops
    the export instead, as asked. Stale `train-*` files of an earlier export with a different shard count are
    removed so a folder glob never mixes exports.
    """
    resolved = _resolve_options(fmt, options)
    run = Path(run_dir)
    shards = sorted((run / "data").glob("train-*.parquet"))
    if not shards:
        raise FileNotFoundError(f"no data shards at {run / 'data' / 'train-*.parquet'}")
    placeholder_check = check_placeholder(run, resolved["placeholder"], tokenizer) if fmt == "openrlhf" else None
    suffix, schema, reader = EXPORT_FORMATS[fmt]
    out_dir = Path(output) if output is not None else run / "exports" / fmt
    convert = _converter(fmt, resolved)
    strict = resolved.get("on_separator") == "error"  # the user asked for a refusal of the export, not a skip
    rules: Counter = Counter()
    written: list[dict[str, Any]] = []
    dead: list[dict[str, str]] = []
    rows_in = rows_out = steps_out = 0
    for i, shard in enumerate(shards):
        rows = pq.read_table(shard).to_pylist()
        converted = []
        for row in rows:
            row_rules: Counter = Counter()  # counted only when the row converts
            try:
                result = convert(row, row_rules)
                steps = _step_count(fmt, result, resolved) if result is not None else 0
            except formats.FormatError as error:
                if strict:
                    raise
                dead.append(_export_dead_letter(row, error))
                continue
            except Exception as error:  # noqa: BLE001 - one row that cannot convert is a dead letter, not the end
                dead.append(_export_dead_letter(row, error))
                continue
            rules.update(row_rules)
            if result is not None:
                converted.append(result)
                steps_out += steps
        name = f"train-{i:05d}-of-{len(shards):05d}{suffix}"
        payload = _jsonl_bytes(converted) if schema is None else _parquet_bytes(converted, schema)
        atomic_write(out_dir / name, payload)
        written.append({"source": shard.name, "file": name, "rows_in": len(rows), "rows_out": len(converted)})
        rows_in += len(rows)
        rows_out += len(converted)
    dead.sort(key=lambda d: tuple(d[f] for f in DEAD_LETTERS.names))
    atomic_write(out_dir / "dead_letters.jsonl", _jsonl_bytes(dead))
    keep = {w["file"] for w in written}
    for stale in out_dir.glob(f"train-*-of-*{suffix}"):
        if stale.name not in keep:
            stale.unlink()
    skipped = {k: v for k, v in sorted(rules.items()) if k.endswith("_skipped_rows")}
    manifest_path = run / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    summary = {
        "format": fmt,
        "reader": reader,
        "run": str(run),
        "output": str(out_dir),
        "run_finished": manifest_path.exists(),
        "config_hash": manifest.get("config_hash"),
        "options": resolved,
        "files": written,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_skipped": sum(skipped.values()),
        "rows_dead_lettered": len(dead),
        "steps_out": steps_out,
        "rules": dict(sorted(rules.items())),
        "balanced": rows_in == rows_out + sum(skipped.values()) + len(dead),
    }
    if fmt == "trl":
        summary["trainer_config"] = {"step_separator": resolved["separator"]}
    if fmt == "openrlhf":
        summary["trainer_config"] = {
            "input_key": "input",
            "label_key": "label",
            "placeholder_token": resolved["placeholder"],
            "reward_tokens": list(formats.OPENRLHF_REWARD_TOKENS),
        }
        summary["placeholder_check"] = placeholder_check
    atomic_write(out_dir / "export.json", (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    return summary


def _export_dead_letter(row: dict[str, Any], error: BaseException) -> dict[str, str]:
    from transforms.dead_letters import failure_reason
    from transforms.read import dead_letter

    return dead_letter("export", str(row.get("source") or ""), failure_reason("export", error), row)


# ---------------------------------------------------------------- import


def _read_records(path: str) -> Iterator[tuple[dict[str, Any] | None, str, str]]:
    """(record or None, raw text, error) for every row of every file matching `path` (JSONL or Parquet)."""
    files = sorted(glob.glob(path)) if any(c in path for c in "*?[") else [path]
    if not files or not all(os.path.isfile(f) for f in files):
        raise FileNotFoundError(f"no input file at {path}")
    for name in files:
        if name.endswith(".parquet"):
            for record in pq.read_table(name).to_pylist():
                yield record, json.dumps(record, ensure_ascii=False, default=str), ""
            continue
        with open(name, encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    yield None, line.rstrip("\n"), f"invalid JSON: {error.msg}"
                    continue
                if not isinstance(record, dict):
                    yield None, line.rstrip("\n"), "invalid JSON: not an object"
                    continue
                yield record, line.rstrip("\n"), ""


def import_rows(
    path: str | os.PathLike[str],
    fmt: str,
    output_dir: str | os.PathLike[str],
    neutral: formats.Neutral = "negative",
    alternatives: bool = False,
    num_shards: int = 1,
) -> dict:
    """Import PRM800K or Math-Shepherd rows (JSONL or Parquet; a glob is fine) into a run-shaped folder.

    Writes `output_dir/data/train-SSSSS-of-NNNNN.parquet` (schemas.tables.paths_schema(), hash-sharded by id
    and sorted, as the pipeline's writer does), `dead_letters/dead_letters.jsonl` (every record that gave no
    row, with its reason) and `manifest.json` last; returns the manifest.
    """
    from pipelines.manifest import code_version
    from schemas.tables import table_bytes
    from transforms.write import shard_of

    if fmt not in IMPORT_FORMATS:
        raise ValueError(f"unknown import format {fmt!r}; one of {list(IMPORT_FORMATS)}")
    if num_shards < 1:
        raise ValueError("num_shards must be at least 1")
    out = Path(output_dir)
    rules: Counter = Counter()
    rows: list[dict[str, Any]] = []
    dead: list[dict[str, str]] = []
    read = 0
    for record, raw, error in _read_records(str(path)):
        read += 1
        try:
            if record is None:
                raise formats.FormatError(error)
            if fmt == "prm800k":
                produced = formats.from_prm800k(record, neutral=neutral, alternatives=alternatives, stats=rules)
            else:
                produced = [formats.from_math_shepherd(record, stats=rules)]
        except (formats.FormatError, KeyError, TypeError, IndexError, AttributeError) as failure:
            dead.append(
                {"stage": "import", "source": fmt, "reason": f"{type(failure).__name__}: {failure}", "row": raw}
            )
            continue
        if not produced:
            dead.append(
                {
                    "stage": "import",
                    "source": fmt,
                    "reason": "no labelled path: nothing rated, or --neutral drop cut it",
                    "row": raw,
                }
            )
            continue
        rows.extend(produced)

    schema = paths_schema()
    by_shard: dict[int, list[dict[str, Any]]] = {s: [] for s in range(num_shards)}
    for row in rows:
        by_shard[shard_of(row["id"], num_shards)].append(row)
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        manifest_path.unlink()  # unfinished until the manifest is written again
    for stale in (out / "data").glob("train-*-of-*.parquet"):
        stale.unlink()
    for shard, shard_rows in by_shard.items():
        shard_rows.sort(key=lambda r: (r["id"], json.dumps(r, sort_keys=True)))
        name = f"train-{shard:05d}-of-{num_shards:05d}.parquet"
        atomic_write(out / "data" / name, table_bytes(shard_rows, schema, "zstd", 1000))
    dead.sort(key=lambda d: tuple(d[f] for f in DEAD_LETTERS.names))
    atomic_write(out / "dead_letters" / "dead_letters.jsonl", _jsonl_bytes(dead))

    steps = sum(len(r["labels"]) for r in rows)
    positives = sum(sum(r["labels"]) for r in rows)
    records_imported = read - len(dead)
    options = {"neutral": neutral, "alternatives": alternatives} if fmt == "prm800k" else {}
    manifest = {
        "stepforge_manifest": 1,
        "command": "import",
        "schema_version": SCHEMA_VERSION,
        "code_version": code_version(),
        "config_hash": formats.import_config_hash(fmt, **options),
        "import": {"source": str(path), "format": fmt, **options, "num_shards": num_shards},
        "counts": {
            "read": read,
            "records_imported": records_imported,
            "paths": len(rows),
            "problems_labelled": len({r["problem_id"] for r in rows}),
            "steps": steps,
            "steps_positive": positives,
            "steps_negative": steps - positives,
            "dead_lettered": len(dead),
            "dead_letters_by_reason": dict(sorted(Counter(d["reason"].split(":")[0] for d in dead).items())),
            "rules": dict(sorted(rules.items())),
            "balanced": read == records_imported + len(dead),
        },
        "outputs": {"paths": "data/train-*.parquet", "dead_letters": "dead_letters/dead_letters.jsonl"},
    }
    atomic_write(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


# ---------------------------------------------------------------- command line


def _unescape(text: str) -> str:
    """`--separator '\\n\\n'` as typed in a shell -> two newlines (only \\n, \\t, \\r and \\\\ are escapes)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "ntr\\":
            out.append({"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def cmd_export(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    """`run.py export`: print a one-line summary; exit 2 on a refused row or bad options."""
    if beam_args:
        print(f"export: unknown options {beam_args}")
        return 2
    options: dict[str, Any] = {}
    if args.soft:
        options["soft"] = True
    if args.null_mc is not None:
        options["null_mc"] = args.null_mc
    if args.separator is not None:
        options["separator"] = _unescape(args.separator)
    if args.on_separator is not None:
        options["on_separator"] = args.on_separator
    if args.placeholder is not None:
        options["placeholder"] = args.placeholder
    if args.tokenizer is not None and args.format != "openrlhf":
        print(
            f"export failed: --tokenizer checks the openrlhf placeholder; it does not apply to --format {args.format}"
        )
        return 2
    try:
        summary = export_run(args.run, args.format, args.output, tokenizer=args.tokenizer, **options)
    except (formats.FormatError, ValueError, FileNotFoundError) as error:
        print(f"export failed: {error}")
        return 2
    rules = ", ".join(f"{k}={v}" for k, v in summary["rules"].items()) or "none"
    check = summary.get("placeholder_check")
    placeholder = ""
    if check is not None:
        token = summary["options"]["placeholder"]
        placeholder = (
            f"; placeholder {token!r} is one token (id {check['placeholder_id']}) for {check['tokenizer']}"
            if check["checked"]
            else f"; placeholder {token!r} not checked: {check['reason']}"
        )
    print(
        f"exported {summary['rows_out']} of {summary['rows_in']} rows ({summary['steps_out']} steps) as {args.format} "
        f"to {summary['output']} in {len(summary['files'])} files; skipped {summary['rows_skipped']}; rules: {rules}"
        f"{placeholder}"
    )
    return 0


def cmd_import(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    """`run.py import`: print a one-line summary."""
    if beam_args:
        print(f"import: unknown options {beam_args}")
        return 2
    try:
        manifest = import_rows(args.source, args.format, args.output, args.neutral, args.alternatives, args.shards)
    except (ValueError, FileNotFoundError) as error:
        print(f"import failed: {error}")
        return 2
    counts = manifest["counts"]
    rules = ", ".join(f"{k}={v}" for k, v in counts["rules"].items()) or "none"
    print(
        f"imported {counts['records_imported']} of {counts['read']} {args.format} records as {counts['paths']} paths "
        f"({counts['steps']} steps, {counts['steps_negative']} negative) to {args.output}; "
        f"dead-lettered {counts['dead_lettered']}; rules: {rules}"
    )
    return 0


def add_export_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `export` and `import` on run.py's subparsers (each sets `func`)."""
    export = subparsers.add_parser("export", help="convert a run's paths to a trainer format")
    export.add_argument("run", help="run folder (with data/train-*.parquet)")
    export.add_argument("--format", required=True, choices=sorted(EXPORT_FORMATS))
    export.add_argument("--output", default=None, help="output folder (default: RUN/exports/FORMAT)")
    export.add_argument("--soft", action="store_true", help="openrlhf: MC values as soft labels")
    export.add_argument(
        "--null-mc",
        choices=("skip", "hard", "error"),
        default=None,
        help="openrlhf --soft: a row with a null MC value is skipped (default), filled from its hard label, or refused",
    )
    export.add_argument(
        "--separator", default=None, help="trl: step separator to keep steps free of (default '\\n'; escapes ok)"
    )
    export.add_argument(
        "--on-separator",
        choices=("replace", "error"),
        default=None,
        help="trl: a separator inside a step is replaced by a space (default) or refused",
    )
    export.add_argument(
        "--placeholder",
        default=None,
        help=f"openrlhf, math-shepherd: the step placeholder (default {formats.OPENRLHF_PLACEHOLDER!r}); "
        "pass the same to OpenRLHF's --placeholder_token",
    )
    export.add_argument(
        "--tokenizer",
        default=None,
        help="openrlhf: the tokenizer to check the placeholder is one token with (path or hub id; default: the "
        "run's policy model when it is a local folder)",
    )
    export.set_defaults(func=cmd_export)

    imp = subparsers.add_parser("import", help="import PRM800K or Math-Shepherd rows as labelled paths")
    imp.add_argument("source", help="JSONL or Parquet file (a quoted glob is fine)")
    imp.add_argument("--format", required=True, choices=IMPORT_FORMATS)
    imp.add_argument("--output", required=True, help="output folder (data/, dead_letters/, manifest.json)")
    imp.add_argument(
        "--neutral",
        choices=sorted(formats.NEUTRAL_POLICIES),
        default="negative",
        help="prm800k: a 0 rating is negative (TRL, default), positive (Qwen) or ends the path (drop)",
    )
    imp.add_argument("--alternatives", action="store_true", help="prm800k: also a path per rated alternative step")
    imp.add_argument("--shards", type=int, default=1, help="number of output shards")
    imp.set_defaults(func=cmd_import)
