"""The report's plots: matplotlib figures (Agg canvas, no pyplot state) drawn from the figures, as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.style import context as style_context

from commands.report.figures import bestofn_models

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
