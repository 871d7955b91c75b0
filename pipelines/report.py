"""`run.py report RUN`: one self-contained HTML page about a finished run, with PNG copies of its plots.

The page (`RUN/report/report.html`) shows the manifest's figures as tables and plots made from the files the
run wrote: where the first errors sit, the MC values, the label balance per source and per annotator, how
often annotators agree, what each labelled step cost in completions and tokens, why rows were dropped, and how
full the engine's batches were. Every number it shows is also in a `<script type="application/json"
id="stepforge-figures">` block, so tests and tools can read it back without scraping.

Output is deterministic: the same run folder gives the same HTML and PNG bytes (fixed sizes and dpi, no
timestamps, no `Software` PNG chunk). Optional parts a run lacks (evidence, engine stats, dead letters,
annotator columns) leave their section saying "not available in this run". Local run folders only.

A run scored by `run.py evaluate --prm CKPT --run RUN` also holds `RUN/evaluation/*.json`: each becomes a table
(step-level scores per model, or the best-of-N accuracies with their intervals) and, for best-of-N, a PNG of
accuracy against N per method (`evaluation-<file stem>.png`). A run without that folder gets the page as before.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.style import context as style_context

from annotators.mc import generated_completions

REPORT_VERSION = 1
FIGURES_ID = "stepforge-figures"
DPI = 100
POSITIVE, NEGATIVE, UNKNOWN = "#1b9e77", "#d95f02", "#bdbdbd"  # colour-blind safe pair plus grey
# PNG metadata: no `Software` chunk (it carries the matplotlib version) so bytes only change with the plot.
PNG_METADATA: dict[str, str | None] = {"Software": None}
NOT_AVAILABLE = "not available in this run"

# The plots, in page order: (file stem, section title).
PLOTS = [
    ("first_error_position", "First-error position"),
    ("mc_values", "MC value distribution"),
    ("label_balance", "Label balance"),
    ("annotator_agreement", "Annotator agreement"),
    ("search_cost", "Completions and generated tokens per labelled step"),
    ("dead_letters_and_filtered", "Dead letters and filtered rows"),
    ("batch_fill", "Engine batch fill over time"),
]

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


# ---------------------------------------------------------------- reading a run folder


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


# ---------------------------------------------------------------- figures (pure: columns in, numbers out)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), digits)


def _rows(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*(columns[n] for n in names), strict=True)]


def first_error_figures(paths: dict[str, list[Any]]) -> dict[str, Any]:
    """Histogram of `first_error_index` by absolute step and by relative position (0 = first, 1 = last step).

    A path truncated after its first error no longer knows its length, so it counts only in the absolute one.
    """
    indices = []
    relative = []
    total = len(paths["first_error_index"])
    truncation = paths.get("truncated_after_first_error") or [False] * total
    for first, labels, truncated in zip(paths["first_error_index"], paths["labels"], truncation, strict=True):
        if first is None or first < 0:
            continue
        indices.append(first)
        n_steps = len(labels or [])
        if not truncated and n_steps:
            relative.append(first / (n_steps - 1) if n_steps > 1 else 0.0)
    absolute_counts = np.bincount(np.array(indices, dtype=int), minlength=1).tolist() if indices else []
    relative_counts, edges = np.histogram(np.array(relative, dtype=float), bins=10, range=(0.0, 1.0))
    return {
        "available": total > 0,
        "paths": total,
        "paths_with_error": len(indices),
        "paths_without_error": total - len(indices),
        "paths_truncated_after_error": len(indices) - len(relative),
        "absolute": {"step_index": list(range(len(absolute_counts))), "counts": absolute_counts},
        "relative": {"edges": [_round(e) for e in edges], "counts": relative_counts.tolist()},
    }


def mc_value_figures(paths: dict[str, list[Any]]) -> dict[str, Any]:
    """Histogram (20 bins over [0, 1]) of the per-step MC values, split by the step's hard label."""
    by_label: dict[str, list[float]] = {"positive": [], "negative": [], "unknown": []}
    nulls = 0
    mc_values = paths.get("mc_values") or [None] * len(paths["labels"])
    for values, labels in zip(mc_values, paths["labels"], strict=True):
        for index, value in enumerate(values or []):
            if value is None or math.isnan(value):
                nulls += 1
                continue
            label = labels[index] if labels is not None and index < len(labels) else None
            by_label["unknown" if label is None else "positive" if label else "negative"].append(float(value))
    edges = np.linspace(0.0, 1.0, 21)
    counts = {k: np.histogram(np.array(v, dtype=float), bins=edges)[0].tolist() for k, v in by_label.items()}
    values = [v for vs in by_label.values() for v in vs]
    return {
        "available": bool(values),
        "steps_with_value": len(values),
        "steps_without_value": nulls,
        "mean": _round(sum(values) / len(values)) if values else None,
        "edges": [_round(e) for e in edges],
        "counts_by_label": counts,
    }


def _tally(lists: list[list[bool | None] | None], lengths: list[int]) -> dict[str, int]:
    counts = {"positive": 0, "negative": 0, "unknown": 0}
    for labels, n_steps in zip(lists, lengths, strict=True):
        for index in range(n_steps):
            value = labels[index] if labels is not None and index < len(labels) else None
            counts["unknown" if value is None else "positive" if value else "negative"] += 1
    return counts


def annotator_name(column: str) -> str:
    """`labels` stays `labels`; `judge_labels` -> `judge`."""
    return column if column == "labels" else column.removesuffix("_labels")


def balance_figures(paths: dict[str, list[Any]], columns: list[str]) -> dict[str, Any]:
    """Positive/negative/unknown steps of `labels` per source, and of every label column (annotator)."""
    lengths = [len(labels or []) for labels in paths["labels"]]
    by_source: dict[str, dict[str, int]] = {}
    for source in sorted({s or "" for s in paths["source"]}):
        keep = [i for i, s in enumerate(paths["source"]) if (s or "") == source]
        by_source[source] = _tally([paths["labels"][i] for i in keep], [lengths[i] for i in keep])
    by_annotator = {annotator_name(c): _tally(paths[c], lengths) for c in columns}
    return {"available": bool(lengths), "by_source": by_source, "by_annotator": by_annotator}


def agreement_figures(paths: dict[str, list[Any]], columns: list[str]) -> dict[str, Any]:
    """Pairwise step-level agreement (and Cohen's kappa) between label columns over steps both labelled."""
    names = [annotator_name(c) for c in columns]
    size = len(columns)
    agreement: list[list[float | None]] = [[None] * size for _ in range(size)]
    kappa: list[list[float | None]] = [[None] * size for _ in range(size)]
    counts: list[list[int]] = [[0] * size for _ in range(size)]
    for a in range(size):
        for b in range(a, size):
            n = same = a_true = b_true = 0
            for left, right in zip(paths[columns[a]], paths[columns[b]], strict=True):
                for x, y in zip(left or [], right or [], strict=False):
                    if x is None or y is None:
                        continue
                    n += 1
                    same += x == y
                    a_true += x
                    b_true += y
            rate = same / n if n else None
            chance = (a_true * b_true + (n - a_true) * (n - b_true)) / (n * n) if n else None
            k = (rate - chance) / (1 - chance) if n and chance < 1 else None
            for i, j in ((a, b), (b, a)):
                counts[i][j], agreement[i][j], kappa[i][j] = n, _round(rate), _round(k)
    return {
        "available": size >= 2,
        "reason": None if size >= 2 else f"only one label column ({', '.join(names) or 'none'})",
        "annotators": names,
        "agreement": agreement,
        "kappa": kappa,
        "n": counts,
    }


def cost_figures(run: RunFiles) -> dict[str, Any]:
    """Completions and generated tokens per labelled step, per search method (each generated completion once).

    Solutions and completions are the MC search's evidence, OmegaPRM's rollouts live in its node table; a
    problem's method comes from its labelled or filtered rows.
    """
    if run.solutions is None and run.completions is None and run.nodes is None:
        return {"available": False, "reason": "no evidence tables"}
    method_of: dict[str, str] = {}
    for table in (run.filtered, run.paths):
        if table and "search" in table:
            method_of.update(zip(table["problem_id"], table["search"], strict=True))
    empty = {"labelled_steps": 0, "solutions": 0, "completions": 0, "solution_tokens": 0, "completion_tokens": 0}
    methods: dict[str, dict[str, Any]] = {}

    def add(problem_id: str, default: str, key: str, amount: int) -> None:
        methods.setdefault(method_of.get(problem_id) or default, dict(empty))[key] += amount

    if run.paths:
        searches = run.paths.get("search") or [None] * len(run.paths["labels"])
        for search, labels in zip(searches, run.paths["labels"], strict=True):
            methods.setdefault(search or "unknown", dict(empty))["labelled_steps"] += len(labels or [])
    for rows, count_key, tokens_key in (
        (_rows(run.solutions), "solutions", "solution_tokens"),
        (generated_completions(_rows(run.completions)), "completions", "completion_tokens"),
    ):
        for row in rows:
            add(row["problem_id"], "mc", count_key, 1)
            add(row["problem_id"], "mc", tokens_key, row.get("n_tokens") or 0)
    nodes = run.nodes or {}
    rollout_tokens = nodes.get("rollouts.list.element.n_tokens", [])
    for problem_id, rollouts in zip(nodes.get("problem_id", []), rollout_tokens, strict=True):
        add(problem_id, "omegaprm", "completions", len(rollouts or []))
        add(problem_id, "omegaprm", "completion_tokens", sum(r.get("n_tokens") or 0 for r in rollouts or []))
    for figures in methods.values():
        steps = figures["labelled_steps"]
        tokens = figures["solution_tokens"] + figures["completion_tokens"]
        figures["generated_tokens"] = tokens
        figures["completions_per_step"] = _round(figures["completions"] / steps) if steps else None
        figures["generated_tokens_per_step"] = _round(tokens / steps, 2) if steps else None
    return {"available": bool(methods), "reason": None, "by_method": dict(sorted(methods.items()))}


def _rows(columns: dict[str, list[Any]] | None) -> list[dict[str, Any]]:
    """Columns read by `read_columns` as one dict per row."""
    return (
        [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)] if columns else []
    )


def _reason(text: str) -> str:
    return str(text).split(":")[0]  # the manifest groups reasons by their text before the first colon


def rejection_figures(run: RunFiles) -> dict[str, Any]:
    """Dead letters by reason and stage, filtered rows by reason (grouped as the manifest groups them)."""
    dead = run.dead_letters
    filtered = run.filtered
    return {
        "available": dead is not None or filtered is not None,
        "dead_letters": None if dead is None else len(dead),
        "dead_letters_by_reason": None
        if dead is None
        else dict(sorted(Counter(_reason(d["reason"]) for d in dead).items())),
        "dead_letters_by_stage": None if dead is None else dict(sorted(Counter(d["stage"] for d in dead).items())),
        "filtered": None if filtered is None else len(filtered["drop_reason"]),
        "filtered_by_reason": None
        if filtered is None
        else dict(sorted(Counter(_reason(r) for r in filtered["drop_reason"]).items())),
    }


def batch_fill_figures(run: RunFiles) -> dict[str, Any]:
    """Sequences per policy-engine call, in call order, as a fraction of the batch capacity."""
    if run.engine_stats is None:
        parent = (run.manifest.get("lineage") or {}).get("parent_run")
        reason = f"relabelled from {parent} with no engine call" if parent else "no _work/engine_stats.json"
        return {"available": False, "reason": reason}
    capacity = run.manifest.get("engine", {}).get("batch_capacity") or (
        run.manifest.get("config", {}).get("search", {}).get("max_sequences_per_call")
    )
    if not capacity:
        return {"available": False, "reason": "no batch capacity in the manifest"}
    sequences: list[int] = []
    boundaries: list[int] = []
    unit = "/".join(sorted({b.get("unit", "call") for b in run.engine_stats})) or "call"
    for batch in run.engine_stats:  # batches in the order the run recorded them; calls in order inside each
        sequences.extend(batch.get("call_sequences", []))
        boundaries.append(len(sequences))
    fills = [min(1.0, s / capacity) for s in sequences]
    ordered = sorted(fills) or [0.0]
    return {
        "available": bool(sequences),
        "reason": None if sequences else "no engine calls",
        "batch_capacity": capacity,
        "unit": unit,  # call: sequences of each engine call | step: sequences in flight at each engine step
        "engine_calls": len(sequences),
        "batches": len(run.engine_stats),
        "batch_ends": boundaries[:-1],
        "call_sequences": sequences,
        "fills": [_round(f) for f in fills],
        "batch_fill_mean": _round(sum(ordered) / len(ordered)),
        "batch_fill_p10": _round(ordered[int(0.1 * (len(ordered) - 1))]),
    }


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (`dead_letters_by_stage.read`); an empty dict stays one `{}` entry."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def manifest_tables(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The manifest's figures as flat tables: run identity, counts, engine, timings, label quality."""
    config = manifest.get("config") or {}
    identity = {
        "command": manifest.get("command"),
        "config_hash": manifest.get("config_hash"),
        "code_version": manifest.get("code_version"),
        "schema_version": manifest.get("schema_version"),
        "run_name": (config.get("run") or {}).get("name"),
        "seed": (config.get("run") or {}).get("seed"),
        "search_method": (config.get("search") or {}).get("method"),
        "policy_model": (manifest.get("engine") or {}).get("model"),
        "parent_run": (manifest.get("lineage") or {}).get("parent_run"),
    }
    if "import" in manifest:
        identity["import"] = manifest["import"]
    tables = {"run": flatten({k: v for k, v in identity.items() if v is not None})}
    for name in ("counts", "engine", "timings", "label_quality"):
        if manifest.get(name):
            tables[name] = flatten(manifest[name])
    return tables


def report_figures(run: RunFiles) -> dict[str, Any]:
    """Every number the report shows: the manifest tables and the data behind each plot."""
    plots: dict[str, Any] = {}
    if run.paths is None:
        reason = {"available": False, "reason": "no labelled-path shards (data/train-*.parquet)"}
        plots.update({name: dict(reason) for name in ("first_error_position", "mc_values", "label_balance")})
        plots["annotator_agreement"] = dict(reason)
    else:
        plots["first_error_position"] = first_error_figures(run.paths)
        plots["mc_values"] = mc_value_figures(run.paths)
        plots["label_balance"] = balance_figures(run.paths, run.label_columns)
        plots["annotator_agreement"] = agreement_figures(run.paths, run.label_columns)
    plots["search_cost"] = cost_figures(run)
    plots["dead_letters_and_filtered"] = rejection_figures(run)
    plots["batch_fill"] = batch_fill_figures(run)
    for figures in plots.values():
        if not figures.get("available") and not figures.get("reason"):
            figures["reason"] = "nothing to plot"
    figures = {
        "report_version": REPORT_VERSION,
        "run_dir": run.run_dir.name,
        "tables": manifest_tables(run.manifest),
        "plots": plots,
    }
    if run.evaluations:  # only then: a run without evaluations keeps its page byte for byte
        figures["evaluations"] = run.evaluations
    return figures


# ---------------------------------------------------------------- plots (matplotlib, Agg, no pyplot state)


def _figure(width: float, height: float = 3.6) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg canvas explicitly: no pyplot, no backend switch for the caller
    return figure


def _integer_counts(*axes_list) -> None:
    for axes in axes_list:
        axes.yaxis.get_major_locator().set_params(integer=True)  # counts of paths or steps: no 0.25 ticks


def _stacked_bars(axes, names: list[str], tallies: list[dict[str, int]], title: str) -> None:
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for key, colour in (("positive", POSITIVE), ("negative", NEGATIVE), ("unknown", UNKNOWN)):
        values = np.array([t[key] for t in tallies], dtype=float)
        axes.bar(x, values, bottom=bottom, color=colour, label=key, width=0.6)
        bottom += values
    for xi, total in zip(x, bottom, strict=True):
        axes.annotate(f"{int(total)}", (xi, total), ha="center", va="bottom", fontsize=8)
    axes.set_xticks(x, names, rotation=20 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    axes.set_ylabel("steps")
    axes.set_title(title)
    axes.set_ylim(0, max(1.0, float(bottom.max(initial=0))) * 1.15)
    axes.set_xlim(-0.8, len(names) - 0.2)
    _integer_counts(axes)


def plot_first_error(figures: dict[str, Any]) -> Figure:
    figure = _figure(10)
    left, right = figure.subplots(1, 2)
    absolute = figures["absolute"]
    left.bar(absolute["step_index"], absolute["counts"], color=NEGATIVE, width=0.8)
    left.set_xlabel("first error step index")
    left.set_ylabel("paths")
    left.set_title(f"absolute ({figures['paths_with_error']} of {figures['paths']} paths have an error)")
    left.xaxis.get_major_locator().set_params(integer=True)
    if not absolute["counts"]:
        left.set_xticks([])
        for axes in (left, right):
            axes.text(0.5, 0.5, "no path has a wrong step", ha="center", va="center", transform=axes.transAxes)
    relative = figures["relative"]
    edges = relative["edges"]
    right.bar(edges[:-1], relative["counts"], width=np.diff(edges), align="edge", color=NEGATIVE, edgecolor="white")
    right.set_xlim(0, 1)
    right.set_xlabel("first error position (0 = first step, 1 = last step)")
    right.set_ylabel("paths")
    excluded = figures["paths_truncated_after_error"]
    right.set_title("relative" + (f" (left out: {excluded} truncated after the error)" if excluded else ""))
    for axes in (left, right):
        axes.set_ylim(0, max(1.0, axes.get_ylim()[1]) * 1.1)  # headroom: the tallest bar never touches the frame
    _integer_counts(left, right)
    return figure


def plot_mc_values(figures: dict[str, Any]) -> Figure:
    figure = _figure(10)
    axes = figure.subplots()
    edges = np.array(figures["edges"])
    bottom = np.zeros(len(edges) - 1)
    for key, colour in (("positive", POSITIVE), ("negative", NEGATIVE), ("unknown", UNKNOWN)):
        counts = np.array(figures["counts_by_label"][key], dtype=float)
        if counts.any():
            axes.bar(edges[:-1], counts, bottom=bottom, width=np.diff(edges), align="edge", color=colour,
                     edgecolor="white", label=f"label {key}")  # fmt: skip
            bottom += counts
    axes.set_xlim(0, 1)
    axes.set_xlabel("MC value of the prefix (share of completions reaching the gold answer)")
    axes.set_ylabel("steps")
    axes.set_title(f"{figures['steps_with_value']} steps with an MC value, {figures['steps_without_value']} without")
    axes.legend(loc="upper center", frameon=False, ncols=3)
    axes.set_ylim(0, max(1.0, float(bottom.max(initial=0))) * 1.2)
    _integer_counts(axes)
    return figure


def plot_label_balance(figures: dict[str, Any]) -> Figure:
    figure = _figure(10)
    left, right = figure.subplots(1, 2)
    sources = figures["by_source"]
    _stacked_bars(left, list(sources), list(sources.values()), "labels per source")
    annotators = figures["by_annotator"]
    _stacked_bars(right, list(annotators), list(annotators.values()), "steps per annotator")
    handles, names = left.get_legend_handles_labels()
    figure.legend(handles, names, loc="outside upper center", ncols=3, frameon=False)  # above both panels, over no bar
    return figure


def plot_agreement(figures: dict[str, Any]) -> Figure:
    names = figures["annotators"]
    size = len(names)
    figure = _figure(max(4.5, 1.3 * size + 2.5), max(3.6, 1.0 * size + 1.2))
    axes = figure.subplots()
    matrix = np.array([[np.nan if v is None else v for v in row] for row in figures["agreement"]], dtype=float)
    image = axes.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    for i in range(size):
        for j in range(size):
            value, n = figures["agreement"][i][j], figures["n"][i][j]
            text = f"{value:.2f}\nn={n}" if value is not None else f"n={n}"
            dark = value is not None and value < 0.6
            axes.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if dark else "black")
    axes.set_xticks(range(size), names, rotation=20, ha="right")
    axes.set_yticks(range(size), names)
    axes.set_title("step-level agreement (nulls ignored)")
    figure.colorbar(image, ax=axes, shrink=0.8, label="agreement")
    return figure


def plot_search_cost(figures: dict[str, Any]) -> Figure:
    figure = _figure(10)
    left, right = figure.subplots(1, 2)
    methods = figures["by_method"]
    names = list(methods)
    x = np.arange(len(names))
    per_step = [methods[m]["completions_per_step"] or 0.0 for m in names]
    left.bar(x, per_step, color="#7570b3", width=0.5)
    for xi, m in zip(x, names, strict=True):
        left.annotate(f"{methods[m]['completions']} / {methods[m]['labelled_steps']}", (xi, per_step[xi]),
                      ha="center", va="bottom", fontsize=8)  # fmt: skip
    left.set_xticks(x, names)
    left.set_xlim(-0.8, len(names) - 0.2)  # one method must not become one page-wide bar
    left.set_ylabel("completions per labelled step")
    left.set_title("completions (rollouts) per labelled step")
    left.set_ylim(0, max(per_step + [1.0]) * 1.2)
    bottom = np.zeros(len(names))
    for key, colour, label in (
        ("solution_tokens", "#66a61e", "solutions"),
        ("completion_tokens", "#e7298a", "completions"),
    ):
        values = np.array(
            [methods[m][key] / methods[m]["labelled_steps"] if methods[m]["labelled_steps"] else 0.0 for m in names]
        )
        right.bar(x, values, bottom=bottom, color=colour, label=label, width=0.5)
        bottom += values
    right.set_xticks(x, names)
    right.set_xlim(-0.8, len(names) - 0.2)
    right.set_ylabel("generated tokens per labelled step")
    right.set_title("generated tokens per labelled step")
    right.legend(loc="upper right", frameon=False, fontsize=8)
    right.set_ylim(0, max(1.0, float(bottom.max(initial=0))) * 1.2)
    return figure


def _reason_bars(axes, counts: dict[str, int] | None, title: str, colour: str) -> None:
    axes.set_title(title if counts is None else f"{title} ({sum(counts.values())})")
    if not counts:
        axes.text(0.5, 0.5, "none" if counts is not None else NOT_AVAILABLE, ha="center", va="center",
                  transform=axes.transAxes, color="#666666")  # fmt: skip
        axes.set_axis_off()
        return
    names = list(counts)[::-1]  # the first reason on top
    values = [counts[n] for n in names]
    axes.barh(range(len(names)), values, color=colour, height=0.6)
    axes.set_yticks(range(len(names)), [n if len(n) <= 40 else n[:37] + "..." for n in names], fontsize=8)
    for y, v in enumerate(values):
        axes.annotate(str(v), (v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    axes.set_xlabel("rows")
    axes.set_xlim(0, max(values) * 1.2)
    axes.xaxis.get_major_locator().set_params(integer=True)


def plot_rejections(figures: dict[str, Any]) -> Figure:
    reasons = max(len(figures["dead_letters_by_reason"] or {}), len(figures["filtered_by_reason"] or {}), 1)
    figure = _figure(10, max(2.6, 0.45 * reasons + 1.4))
    left, right = figure.subplots(1, 2)
    _reason_bars(left, figures["dead_letters_by_reason"], "dead letters by reason", "#e6ab02")
    _reason_bars(right, figures["filtered_by_reason"], "filtered by reason", "#a6761d")
    return figure


def plot_batch_fill(figures: dict[str, Any]) -> Figure:
    figure = _figure(10, 3.2)
    axes = figure.subplots()
    fills = figures["fills"]
    x = np.arange(1, len(fills) + 1)
    axes.bar(x, fills, width=1.0, color="#1f78b4", edgecolor="white" if len(fills) <= 80 else "none", linewidth=0.5)
    for end in figures["batch_ends"]:
        axes.axvline(end + 0.5, color="#555555", linestyle=":", linewidth=1.2, zorder=3)
    axes.axhline(figures["batch_fill_mean"], color="#333333", linestyle="--", linewidth=1)
    unit = figures.get("unit", "call")
    axes.set_title(
        f"{figures['engine_calls']} {unit}s, fill mean {figures['batch_fill_mean']:.3f} (dashed), "
        f"p10 {figures['batch_fill_p10']:.3f}"
    )
    axes.set_xlim(0.5, len(fills) + 0.5)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel(f"engine {unit}, in order (dotted lines separate the {figures['batches']} search batches)")
    axes.set_ylabel(f"sequences / {figures['batch_capacity']}")
    axes.xaxis.get_major_locator().set_params(integer=True)
    return figure


PLOTTERS: dict[str, Callable[[dict[str, Any]], Figure]] = {
    "first_error_position": plot_first_error,
    "mc_values": plot_mc_values,
    "label_balance": plot_label_balance,
    "annotator_agreement": plot_agreement,
    "search_cost": plot_search_cost,
    "dead_letters_and_filtered": plot_rejections,
    "batch_fill": plot_batch_fill,
}


def bestofn_models(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The models of a best-of-N evaluation that carry a table (`prms: {name: {best_of_n: ...}}`)."""
    return {name: v for name, v in (evaluation.get("prms") or {}).items() if isinstance(v, dict) and v.get("best_of_n")}


METHOD_COLOURS = {"prm_min": "#1b9e77", "prm_last": "#66a61e", "orm": "#7570b3", "majority": "#d95f02",
                  "random": "#999999", "oracle": "#e7298a"}  # fmt: skip


def plot_bestofn(models: dict[str, dict[str, Any]]) -> Figure:
    """Accuracy against N per method, one panel per model, with the bootstrap interval as error bars."""
    figure = _figure(5.5 * len(models), 3.8)
    panels = figure.subplots(1, len(models), squeeze=False)[0]
    for axes, (name, model) in zip(panels, models.items(), strict=True):
        table = model["best_of_n"]
        ns = sorted(table, key=int)
        methods = list(dict.fromkeys(m for n in ns for m in table[n]))
        for offset, method in enumerate(methods):
            rows = [table[n].get(method) for n in ns]
            xs = [int(n) * 2 ** ((offset - len(methods) / 2) * 0.04) for n, r in zip(ns, rows, strict=True) if r]
            means = [r["mean"] for r in rows if r]
            errors = [[r["mean"] - r["low"] for r in rows if r], [r["high"] - r["mean"] for r in rows if r]]
            axes.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=method,
                          color=METHOD_COLOURS.get(method, "#333333"))  # fmt: skip
        axes.set_xscale("log", base=2)
        axes.set_xticks([int(n) for n in ns], ns)
        axes.set_xlabel("N (policy samples per pick)")
        axes.set_ylabel("accuracy")
        axes.set_ylim(0, 1.05)
        axes.set_title(f"best-of-N: {name}")
        axes.legend(loc="upper left", frameon=False, fontsize=8, ncols=3)  # the top left is clear of the lines
    return figure


def render_evaluation_plots(figures: dict[str, Any]) -> dict[str, bytes]:
    """PNG bytes per `evaluation-<stem>` for every evaluation with a best-of-N table."""
    out = {}
    with style_context("default"):
        for stem, evaluation in (figures.get("evaluations") or {}).items():
            models = bestofn_models(evaluation)
            if models:
                out[f"evaluation-{stem}"] = render_png(plot_bestofn(models))
    return out


def render_png(figure: Figure) -> bytes:
    """PNG bytes at the fixed dpi without the metadata that would vary between versions or runs."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata=PNG_METADATA)
    return buffer.getvalue()


def render_plots(figures: dict[str, Any]) -> dict[str, bytes]:
    """PNG bytes per plot stem, for every plot whose figures are available."""
    out = {}
    with style_context("default"):  # the user's matplotlibrc never changes the pictures
        for stem, _ in PLOTS:
            if figures["plots"][stem].get("available"):
                out[stem] = render_png(PLOTTERS[stem](figures["plots"][stem]))
    return out


# ---------------------------------------------------------------- HTML

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1040px;
       padding: 24px; color: #222; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.sub { color: #666; margin-top: 0; }
.grid { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f6f6; font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
img { max-width: 100%; border: 1px solid #eee; }
.na { color: #777; font-style: italic; background: #fafafa; padding: 12px; border: 1px dashed #ccc; }
.ok { color: #1b7e3c; font-weight: 600; } .bad { color: #b00020; font-weight: 600; }
details { margin-bottom: 16px; }
pre { background: #f6f6f6; padding: 12px; overflow-x: auto; font-size: 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 20px; } .card span { color: #666; font-size: 12px; }
"""

CAPTIONS = {
    "first_error_position": "Where the first wrong step sits in each labelled path (paths in data/).",
    "mc_values": "MC estimates of every labelled prefix, coloured by the step's hard label.",
    "label_balance": "Positive, negative and unknown (null or missing) steps: the final labels per source, and "
    "each annotator's labels.",
    "annotator_agreement": "Share of steps on which two annotators give the same label, over the steps both "
    "labelled (n). `labels` is the label column TRL reads.",
    "search_cost": "What the search generated: sampled solutions and completions (OmegaPRM rollouts), each "
    "generated completion counted once, and their tokens, divided by the labelled steps in data/.",
    "dead_letters_and_filtered": "Rows that left the run with a reason: dead letters (bad input, failed search "
    "or labelling) and labelled paths a filter dropped.",
    "batch_fill": "Sequences per policy-engine call (or, with search.driver=requests, in flight at each engine "
    "step) as a share of the batch capacity, in order.",
}


def format_value(value: Any) -> str:
    """How a table cell shows a manifest value: strings as they are, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _key_value_table(table_id: str, title: str, rows: dict[str, Any]) -> str:
    numeric = table_id != "run"  # the run table holds identifiers: left-aligned like text
    body = "".join(
        f'<tr><th>{html.escape(key)}</th><td class="{"num" if numeric and isinstance(v, int | float) else ""}" '
        f'data-key="{html.escape(key)}">{html.escape(format_value(v))}</td></tr>'
        for key, v in rows.items()
    )
    return f'<table id="table-{table_id}"><caption>{html.escape(title)}</caption>{body}</table>'


def _depth(value: Any) -> int:
    if not isinstance(value, dict) or not value:
        return 0
    return 1 + max(_depth(v) for v in value.values())


def _cell(key: str, value: Any) -> str:
    return f'<td class="num" data-key="{html.escape(key)}">{html.escape(format_value(value))}</td>'


def _label_quality_tables(quality: dict[str, Any], prefix: str = "") -> str:
    """Scores as tables: each dict of score dicts (annotator -> scores) becomes one matrix, annotators as rows.

    The nesting is whatever the evaluator wrote (`{benchmark: {n_paths, annotator: {score, by_x: {...}}}}`);
    deeper dicts get a heading and recurse, scalars beside them a key/value table. Every value cell carries its
    full dotted manifest key in `data-key`.
    """
    scalars = {k: v for k, v in quality.items() if _depth(v) == 0}
    groups = {k: v for k, v in quality.items() if _depth(v) > 0}
    table_id = "label_quality" + (f"-{prefix}" if prefix else "")
    parts = []
    if scalars:
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th>{_cell(f'{prefix}.{k}' if prefix else k, v)}</tr>"
            for k, v in scalars.items()
        )
        parts.append(
            f'<table id="table-{table_id}-values"><caption>{html.escape(prefix or "scores")}</caption>{rows}</table>'
        )
    if groups and all(_depth(v) <= 2 for v in groups.values()):
        flat_groups = {name: flatten(scores) for name, scores in groups.items()}
        # plain scores first, then the flattened breakdowns (`by_chain_length.3`)
        metrics = sorted({m for flat in flat_groups.values() for m in flat}, key=lambda m: ("." in m, m))
        head = "<tr><th>annotator</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in metrics) + "</tr>"
        rows = []
        for name, flat in flat_groups.items():
            key = f"{prefix}.{name}" if prefix else name
            cells = "".join(_cell(f"{key}.{m}", flat[m]) if m in flat else "<td></td>" for m in metrics)
            rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
        caption = html.escape(prefix or "per annotator")
        parts.append(f'<table id="table-{table_id}"><caption>{caption}</caption>{head}{"".join(rows)}</table>')
    else:
        for name, inner in groups.items():
            key = f"{prefix}.{name}" if prefix else name
            parts.append(f"<div><h3>{html.escape(key)}</h3>{_label_quality_tables(inner, key)}</div>")
    return f'<div class="grid">{"".join(parts)}</div>'


def _cards(tables: dict[str, dict[str, Any]]) -> str:
    counts, engine, timings = tables.get("counts", {}), tables.get("engine", {}), tables.get("timings", {})
    steps = counts.get("steps")
    positive = counts.get("steps_positive")
    share = f"{100 * positive / steps:.1f}% positive" if steps and positive is not None else "steps"
    cards = [
        (counts.get("problems", counts.get("read")), "problems"),
        (counts.get("paths"), "labelled paths"),
        (steps, share),
        (counts.get("dead_lettered"), "dead-lettered"),
        (counts.get("filtered"), "filtered"),
        (engine.get("generated_tokens"), "generated tokens"),
        (timings.get("wall_seconds"), "wall seconds"),
    ]
    items = "".join(
        f'<div class="card"><b>{html.escape(format_value(v))}</b><span>{html.escape(label)}</span></div>'
        for v, label in cards
        if v is not None
    )
    balanced = counts.get("balanced")
    check = (
        ""
        if balanced is None
        else f'<p>Counts add up: <span class="{"ok" if balanced else "bad"}">{"yes" if balanced else "NO"}</span></p>'
    )
    return f'<div class="cards">{items}</div>{check}'


def _spend_html(spend: dict[str, Any] | None) -> str:
    """The run's spend (manifest `spend`): what its generated tokens cost on each GPU type (docs/scale.md)."""
    if not spend:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(gpu)}</td><td>{cost['gpu_hours'][0]:.3f} - {cost['gpu_hours'][1]:.3f}</td>"
        f"<td>${cost['dollars'][0]:.2f} - ${cost['dollars'][1]:.2f}</td></tr>"
        for gpu, cost in sorted((spend.get("at") or {}).items())
    )
    per = ", ".join(
        f"{html.escape(format_value(spend.get(key)))} {label}"
        for key, label in (
            ("sequences_per_problem", "sequences per problem"),
            ("tokens_per_sequence", "tokens per sequence"),
            ("steps_per_solution", "steps per solution"),
        )
        if spend.get(key) is not None
    )
    return (
        f"<h2>Spend</h2><p>{html.escape(format_value(spend.get('sequences')))} sequences, "
        f"{html.escape(format_value(spend.get('generated_tokens')))} generated tokens ({per}); on a GPU that many "
        "tokens take (throughput and on-demand price ranges of docs/scale.md, the ranges `stepforge estimate` "
        "uses):</p><table><tr><th>GPU</th><th>GPU-hours</th><th>price</th></tr>"
        f"{rows}</table>"
    )


def _agreement_table(figures: dict[str, Any]) -> str:
    names = figures["annotators"]
    rows = []
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            rate, kappa, n = figures["agreement"][a][b], figures["kappa"][a][b], figures["n"][a][b]
            rows.append(
                f"<tr><td>{html.escape(names[a])}</td><td>{html.escape(names[b])}</td>"
                f'<td class="num">{format_value(rate)}</td><td class="num">{format_value(kappa)}</td>'
                f'<td class="num">{n}</td></tr>'
            )
    head = "<tr><th>annotator</th><th>annotator</th><th>agreement</th><th>Cohen's kappa</th><th>n steps</th></tr>"
    return f'<table id="table-agreement"><caption>pairs</caption>{head}{"".join(rows)}</table>'


def _cost_table(figures: dict[str, Any]) -> str:
    keys = ["labelled_steps", "solutions", "completions", "generated_tokens", "completions_per_step",
            "generated_tokens_per_step"]  # fmt: skip
    head = "<tr><th>search</th>" + "".join(f"<th>{k.replace('_', ' ')}</th>" for k in keys) + "</tr>"
    rows = "".join(
        f"<tr><th>{html.escape(m)}</th>" + "".join(f'<td class="num">{format_value(v[k])}</td>' for k in keys) + "</tr>"
        for m, v in figures["by_method"].items()
    )
    return f'<table id="table-search_cost"><caption>per search method</caption>{head}{rows}</table>'


def _section(stem: str, title: str, figures: dict[str, Any], png: bytes | None) -> str:
    parts = [f'<section id="plot-{stem}"><h2>{html.escape(title)}</h2>', f"<p>{html.escape(CAPTIONS[stem])}</p>"]
    if png is None:
        reason = figures.get("reason")
        parts.append(f'<p class="na">{NOT_AVAILABLE}{": " + html.escape(reason) if reason else ""}.</p>')
    else:
        encoded = base64.b64encode(png).decode()
        parts.append(f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(title)}" data-plot="{stem}">')
        if stem == "annotator_agreement":
            parts.append(_agreement_table(figures))
        elif stem == "search_cost":
            parts.append(_cost_table(figures))
    parts.append("</section>")
    return "".join(parts)


def _interval(row: dict[str, Any]) -> str:
    text = f"{row['mean']:.3f} [{row['low']:.3f}, {row['high']:.3f}]"
    return text + (" *" if row.get("beats_majority") else "")


def _bestofn_table(stem: str, name: str, table: dict[str, Any]) -> str:
    ns = sorted(table, key=int)
    methods = list(dict.fromkeys(m for n in ns for m in table[n]))
    head = "<tr><th>method</th>" + "".join(f"<th>N = {html.escape(n)}</th>" for n in ns) + "</tr>"
    rows = []
    for method in methods:
        cells = [
            _cell(f"{stem}.{name}.{n}.{method}", _interval(table[n][method])) if method in table[n] else "<td></td>"
            for n in ns
        ]
        rows.append(f"<tr><th>{html.escape(method)}</th>{''.join(cells)}</tr>")
    caption = html.escape(f"best-of-N accuracy, {name}: mean [95% interval]; * = above majority vote")
    table_id = html.escape(f"evaluation-{stem}-{name}")
    return f'<table id="table-{table_id}"><caption>{caption}</caption>{head}{"".join(rows)}</table>'


def _scores_table(table_id: str, caption: str, models: dict[str, Any]) -> str:
    flat = {name: flatten(scores) for name, scores in models.items() if isinstance(scores, dict)}
    metrics = sorted({m for scores in flat.values() for m in scores})
    head = "<tr><th>model</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in metrics) + "</tr>"
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th>"
        + "".join(_cell(f"{table_id}.{name}.{m}", scores[m]) if m in scores else "<td></td>" for m in metrics)
        + "</tr>"
        for name, scores in flat.items()
    )
    return f'<table id="table-{html.escape(table_id)}"><caption>{html.escape(caption)}</caption>{head}{rows}</table>'


def _evaluation_section(stem: str, evaluation: dict[str, Any], png: bytes | None) -> str:
    """One evaluation file: its settings, per-model scores (step level) or best-of-N table, and its plot."""
    scalars = {k: v for k, v in evaluation.items() if not isinstance(v, dict | list)}
    parts = [f"<h3>{html.escape(stem)}</h3>", '<div class="grid">', _key_value_table(f"evaluation-{stem}-settings",
             "settings", scalars)]  # fmt: skip
    if evaluation.get("annotators"):
        parts.append(_scores_table(f"evaluation-{stem}-scores", "step level", evaluation["annotators"]))
    for name, model in bestofn_models(evaluation).items():
        parts.append(_bestofn_table(stem, name, model["best_of_n"]))
        if model.get("step_level"):
            parts.append(_scores_table(f"evaluation-{stem}-step_level", "step level on the samples",
                                       {name: model["step_level"]}))  # fmt: skip
    parts.append("</div>")
    if png is not None:
        encoded = base64.b64encode(png).decode()
        parts.append(f'<img src="data:image/png;base64,{encoded}" alt="best-of-N {html.escape(stem)}" '
                     f'data-plot="evaluation-{html.escape(stem)}">')  # fmt: skip
    return "".join(parts)


def _evaluations_html(figures: dict[str, Any], pngs: dict[str, bytes]) -> str:
    evaluations = figures.get("evaluations") or {}
    if not evaluations:
        return ""
    body = "".join(_evaluation_section(s, e, pngs.get(f"evaluation-{s}")) for s, e in evaluations.items())
    return (
        '<section id="evaluations"><h2>Reward model evaluation</h2><p>From RUN/evaluation/ (`run.py evaluate '
        "--prm CKPT --run RUN`): step-level first-error scores (ProcessBench F1, step AUROC) and best-of-N "
        f"accuracy with bootstrap intervals over problems.</p>{body}</section>\n"
    )


def _script_json(data: Any) -> str:
    # `<`, `>` and `&` escaped so no string in the run (a drop reason, a model name) can end the script element.
    text = json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_html(run: RunFiles, figures: dict[str, Any], pngs: dict[str, bytes]) -> str:
    """The report page: header, summary cards, manifest tables, one section per plot, config, figures JSON."""
    tables = figures["tables"]
    manifest = run.manifest
    title = f"StepForge run report: {run.run_dir.name}"
    sub = " · ".join(
        html.escape(str(v))
        for v in (
            manifest.get("command"),
            tables["run"].get("search_method"),
            tables["run"].get("policy_model"),
            f"config {str(manifest.get('config_hash', ''))[:12]}",
        )
        if v
    )
    table_html = [_key_value_table("run", "run", tables["run"])]
    for name in ("counts", "engine", "timings"):
        if name in tables:
            table_html.append(_key_value_table(name, name, tables[name]))
    warnings = "".join(
        f'<p class="bad warning">Warning: {html.escape(str(line))}</p>' for line in manifest.get("warnings") or []
    )
    quality = ""
    if manifest.get("label_quality"):
        quality = f"<h2>Label quality</h2>{_label_quality_tables(manifest['label_quality'])}"
    sections = "".join(_section(stem, name, figures["plots"][stem], pngs.get(stem)) for stem, name in PLOTS)
    config = manifest.get("config") or manifest.get("import")
    config_html = (
        f"<h2>Config</h2><details><summary>config (hash {html.escape(str(manifest.get('config_hash')))})</summary>"
        f"<pre>{html.escape(json.dumps(config, indent=2, sort_keys=True))}</pre></details>"
        if config
        else ""
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        f'<h1>{html.escape(title)}</h1><p class="sub">{sub}</p>\n'
        f"{warnings}{_cards(tables)}\n"
        f'<h2>Manifest</h2><div class="grid">{"".join(table_html)}</div>\n'
        f"{_spend_html(manifest.get('spend'))}\n"
        f"{quality}\n{sections}\n{_evaluations_html(figures, pngs)}{config_html}\n"
        f'<p class="sub">Written by pipelines/report.py (report version {REPORT_VERSION}) from '
        f"{html.escape(run.run_dir.name)}/manifest.json and the run's files.</p>\n"
        f'<script type="application/json" id="{FIGURES_ID}">{_script_json(figures)}</script>\n'
        "</body></html>\n"
    )


# ---------------------------------------------------------------- entry points


def _atomic_write(path: Path, payload: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp.write_bytes(payload)
    temp.replace(path)


def write_report(run_dir: str | os.PathLike[str], output: str | os.PathLike[str] | None = None) -> Path:
    """Write the report of a finished run; returns the HTML path.

    `output` is the HTML file (default `RUN/report/report.html`); the PNG copies of the plots go beside it as
    `<plot>.png`, and copies left over from an earlier report of a plot this run lacks are removed.
    """
    run = load_run(run_dir)
    html_path = Path(output) if output is not None else run.run_dir / "report" / "report.html"
    html_path.parent.mkdir(parents=True, exist_ok=True)
    figures = report_figures(run)
    pngs = render_plots(figures)
    for stem, _ in PLOTS:
        png_path = html_path.parent / f"{stem}.png"
        if stem in pngs:
            _atomic_write(png_path, pngs[stem])
        elif png_path.exists():
            png_path.unlink()  # a stale copy would show a plot this run does not have
    evaluation_pngs = render_evaluation_plots(figures)
    for stale in html_path.parent.glob("evaluation-*.png"):
        if stale.stem not in evaluation_pngs:
            stale.unlink()
    for stem, png in evaluation_pngs.items():
        _atomic_write(html_path.parent / f"{stem}.png", png)
    pngs = {**pngs, **evaluation_pngs}
    _atomic_write(html_path, render_html(run, figures, pngs).encode())
    return html_path


def cmd_report(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    """`run.py report RUN [--output FILE]`: print the report's path; exit 2 when RUN is not a finished run."""
    if beam_args:
        print(f"report: unknown options {beam_args}")
        return 2
    try:
        path = write_report(args.run, args.output)
    except (FileNotFoundError, ValueError) as error:
        print(f"report failed: {error}")
        return 2
    print(path)
    return 0


def add_report_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `report` on run.py's subparsers (sets `func`)."""
    report = subparsers.add_parser("report", help="write a self-contained HTML report of a finished run")
    report.add_argument("run", help="run folder (with manifest.json), or a dataset root holding one run")
    report.add_argument(
        "--output", default=None, help="HTML file (default: RUN/report/report.html); PNG copies go beside it"
    )
    report.set_defaults(func=cmd_report)
