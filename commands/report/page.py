"""The report page: the figures as HTML tables around the embedded PNGs, with every number in a JSON block."""

from __future__ import annotations

import base64
import html
import json
from typing import Any

from commands.report.figures import REPORT_VERSION, bestofn_models, flatten
from commands.report.loading import RunFiles
from commands.report.plots import NOT_AVAILABLE, PLOTS

FIGURES_ID = "stepforge-figures"

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
        f'<p class="sub">Written by commands/report/ (report version {REPORT_VERSION}) from '
        f"{html.escape(run.run_dir.name)}/manifest.json and the run's files.</p>\n"
        f'<script type="application/json" id="{FIGURES_ID}">{_script_json(figures)}</script>\n'
        "</body></html>\n"
    )
