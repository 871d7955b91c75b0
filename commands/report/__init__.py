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

The package by idea: `loading` reads a run folder, `figures` computes the numbers, `plots` draws the PNGs,
`page` renders the HTML; this module writes them and registers the `report` command.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from commands.report.figures import (
    REPORT_VERSION,
    agreement_figures,
    annotator_name,
    balance_figures,
    batch_fill_figures,
    bestofn_models,
    cost_figures,
    first_error_figures,
    flatten,
    manifest_tables,
    mc_value_figures,
    rejection_figures,
    report_figures,
)
from commands.report.loading import PATH_COLUMNS, RunFiles, label_columns, load_run, read_columns, resolve_run_dir
from commands.report.page import CAPTIONS, CSS, FIGURES_ID, format_value, render_html
from commands.report.plots import (
    DPI,
    NOT_AVAILABLE,
    PLOTS,
    PLOTTERS,
    plot_bestofn,
    render_evaluation_plots,
    render_plots,
    render_png,
)
from storage import atomic_write

# The public names, importable from `commands.report` as before the split.
__all__ = [
    "CAPTIONS",
    "CSS",
    "DPI",
    "FIGURES_ID",
    "NOT_AVAILABLE",
    "PATH_COLUMNS",
    "PLOTS",
    "PLOTTERS",
    "REPORT_VERSION",
    "RunFiles",
    "add_report_commands",
    "agreement_figures",
    "annotator_name",
    "balance_figures",
    "batch_fill_figures",
    "bestofn_models",
    "cmd_report",
    "cost_figures",
    "first_error_figures",
    "flatten",
    "format_value",
    "label_columns",
    "load_run",
    "manifest_tables",
    "mc_value_figures",
    "plot_bestofn",
    "read_columns",
    "rejection_figures",
    "render_evaluation_plots",
    "render_html",
    "render_plots",
    "render_png",
    "report_figures",
    "resolve_run_dir",
    "write_report",
]


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
            atomic_write(png_path, pngs[stem])
        elif png_path.exists():
            png_path.unlink()  # a stale copy would show a plot this run does not have
    evaluation_pngs = render_evaluation_plots(figures)
    for stale in html_path.parent.glob("evaluation-*.png"):
        if stale.stem not in evaluation_pngs:
            stale.unlink()
    for stem, png in evaluation_pngs.items():
        atomic_write(html_path.parent / f"{stem}.png", png)
    pngs = {**pngs, **evaluation_pngs}
    atomic_write(html_path, render_html(run, figures, pngs).encode())
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
