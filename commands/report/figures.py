"""The report's numbers: pure functions from a run's columns and manifest to the figures behind each table and plot."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from annotators.mc import generated_completions
from annotators.rounding import round_figure
from commands.report.loading import RunFiles

REPORT_VERSION = 1


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
        "relative": {"edges": [round_figure(e) for e in edges], "counts": relative_counts.tolist()},
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
        "mean": round_figure(sum(values) / len(values)) if values else None,
        "edges": [round_figure(e) for e in edges],
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
                counts[i][j], agreement[i][j], kappa[i][j] = n, round_figure(rate), round_figure(k)
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
        figures["completions_per_step"] = round_figure(figures["completions"] / steps) if steps else None
        figures["generated_tokens_per_step"] = round_figure(tokens / steps, 2) if steps else None
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
        "fills": [round_figure(f) for f in fills],
        "batch_fill_mean": round_figure(sum(ordered) / len(ordered)),
        "batch_fill_p10": round_figure(ordered[int(0.1 * (len(ordered) - 1))]),
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


def bestofn_models(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The models of a best-of-N evaluation that carry a table (`prms: {name: {best_of_n: ...}}`)."""
    return {name: v for name, v in (evaluation.get("prms") or {}).items() if isinstance(v, dict) and v.get("best_of_n")}
