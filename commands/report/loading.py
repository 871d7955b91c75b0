"""Reading a finished run folder: the columns, evidence, dead letters and engine stats the report shows."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

# Columns of the labelled-path table the report reads (step texts are never loaded: `labels` gives the length).
PATH_COLUMNS = [
    "id",
    "problem_id",
    "source",
    "labels",
    "mc_values",
    "first_error_index",
    "truncated_after_first_error",
    "label_policy",
    "search",
]


def _files(run_dir: Path, pattern: str) -> list[Path]:
    return sorted(p for p in run_dir.glob(pattern) if p.is_file())


def read_columns(files: list[Path], columns: list[str]) -> dict[str, list[Any]] | None:
    """The named columns of Parquet `files` as Python lists (absent columns are skipped); None without files.

    A dotted name (`rollouts.list.element.n_tokens`) reads one leaf of a nested column.
    """
    if not files:
        return None
    out: dict[str, list[Any]] = {}
    for path in files:
        parquet = pq.ParquetFile(path)
        leaves = set(parquet.schema_arrow.names) | {c.path for c in parquet.schema}
        wanted = [c for c in columns if c in leaves]
        table = parquet.read(columns=wanted) if wanted else None
        for name in wanted:
            top = name.split(".")[0]
            out.setdefault(name, []).extend(table.column(top).to_pylist())
    return out


def label_columns(files: list[Path]) -> list[str]:
    """`labels` first, then every other `<name>_labels` list-of-bool column (verifiers, judge, progress)."""
    if not files:
        return []
    schema = pq.read_schema(files[0])
    extra = sorted(
        f.name
        for f in schema
        if f.name.endswith("_labels") and str(f.type) in ("list<element: bool>", "list<item: bool>")
    )
    return (["labels"] if "labels" in schema.names else []) + extra


@dataclass
class RunFiles:
    """What the report reads from one run folder; None marks a part the run does not have."""

    run_dir: Path
    manifest: dict[str, Any]
    paths: dict[str, list[Any]] | None
    label_columns: list[str]
    filtered: dict[str, list[Any]] | None
    solutions: dict[str, list[Any]] | None
    completions: dict[str, list[Any]] | None
    nodes: dict[str, list[Any]] | None
    dead_letters: list[dict[str, Any]] | None
    engine_stats: list[dict[str, Any]] | None
    notes: list[str] = field(default_factory=list)
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)  # RUN/evaluation/<stem>.json by stem


def resolve_run_dir(path: str | os.PathLike[str]) -> Path:
    """The run folder at `path`, or the one finished run under a dataset root (`schema_vN/cfg_<hash>/`)."""
    if "://" in str(path):
        raise ValueError(f"report: local run folders only, got {path!s}")
    root = Path(path)
    if (root / "manifest.json").is_file():
        return root
    runs = sorted(m.parent for m in root.glob("schema_v*/cfg_*/manifest.json"))
    if len(runs) == 1:
        return runs[0]
    if runs:
        listed = ", ".join(str(r.relative_to(root)) for r in runs)
        raise ValueError(f"{root} holds {len(runs)} runs ({listed}); name one")
    raise FileNotFoundError(f"{root / 'manifest.json'}: no manifest (the run is unfinished or not a run folder)")


def load_run(run_dir: str | os.PathLike[str]) -> RunFiles:
    """Read a finished run folder (or the one run under a dataset root); its `manifest.json` must exist."""
    root = resolve_run_dir(run_dir)
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    data_files = _files(root, "data/train-*.parquet")
    labels = label_columns(data_files)
    dead_path = root / "dead_letters" / "dead_letters.jsonl"
    dead = (
        [json.loads(line) for line in dead_path.read_text().splitlines() if line.strip()]
        if dead_path.is_file()
        else None
    )
    stats_path = root / "_work" / "engine_stats.json"
    # A relabel (`run.py annotate`) reuses its parent's evidence, as the manifest's counts do.
    parent = (manifest.get("lineage") or {}).get("parent_run")
    evidence = Path(parent) if parent and "://" not in parent and Path(parent).is_dir() else root
    return RunFiles(
        run_dir=root,
        manifest=manifest,
        paths=read_columns(data_files, PATH_COLUMNS + [c for c in labels if c != "labels"]),
        label_columns=labels,
        filtered=read_columns(
            _files(root, "filtered/part-*.parquet"), ["problem_id", "source", "search", "drop_reason"]
        ),
        solutions=read_columns(_files(evidence, "evidence/solutions/part-*.parquet"), ["problem_id", "n_tokens"]),
        completions=read_columns(
            _files(evidence, "evidence/completions/part-*.parquet"),
            ["problem_id", "n_tokens", "seed", "completion_index"],
        ),
        nodes=read_columns(
            _files(evidence, "evidence/omegaprm_nodes/part-*.parquet"), ["problem_id", "rollouts.list.element.n_tokens"]
        ),
        dead_letters=dead,
        engine_stats=json.loads(stats_path.read_text()) if stats_path.is_file() else None,
        evaluations={p.stem: json.loads(p.read_text()) for p in _files(root, "evaluation/*.json")},
    )
