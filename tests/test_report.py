"""The run report: every plot is a valid PNG embedded in one self-contained HTML page, and every number it shows
equals the manifest's (a fake run folder always; a real demo run when the tiny model is present)."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotators.labelling import LabelSetting
from annotators.mc import LabelRule
from commands import report
from pipelines import manifest as manifest_lib
from schemas import tables
from schemas.config import config_from_dict

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "tiny-arith"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL_PLOTS = [stem for stem, _ in report.PLOTS]

# ---------------------------------------------------------------- a fake run folder, manifest by the real code

T, F, N = True, False, None
# (id, problem_id, source, labels, mc_values, arithmetic_labels, judge_labels, truncated)
PATHS = [
    ("p1-0", "p1", "gsm", [T, T, T], [1.0, 0.75, 0.5], [T, T, N], [T, T, T], False),
    ("p1-1", "p1", "gsm", [T, F, F], [0.75, 0.0, 0.0], [T, F, N], [T, F, T], False),
    ("p2-0", "p2", "gsm", [F], [0.0], [F], [T], False),
    ("p3-0", "p3", "math", [T, T, T, F], [1.0, 1.0, 0.5, 0.0], [N, N, N, N], [T, T, T, F], False),
    ("p3-1", "p3", "math", [T, F], [0.25, 0.0], [T, T], [T, F], True),
    ("p4-0", "p4", "math", [T, T], [1.0, None], [T, T], [T, T], False),
]
FILTERED = [
    ("p5-0", "p5", "math", "consensus: labels disagree with consensus: first_error_index=0"),
    ("p5-1", "p5", "math", "balance: positive/negative step ratio"),
]
DEAD = [
    {"stage": "read", "source": "gsm", "reason": "JSONDecodeError: Expecting value", "row": "{"},
    {"stage": "read", "source": "gsm", "reason": "missing field: answer", "row": '{"question": "Q"}'},
    {"stage": "search", "source": "math", "reason": "engine failed: timeout after 3 attempts", "row": "{}"},
]
ENGINE_STATS = [
    {"call_sequences": [8, 12, 4], "engine_seconds": 1.5, "generated_tokens": 120, "wall_seconds": 2.0, "problems": 3},
    {"call_sequences": [16, 2], "engine_seconds": 0.5, "generated_tokens": 80, "wall_seconds": 1.0, "problems": 3},
]
CAPACITY = 16


def _write(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _path_row(values: tuple, schema: pa.Schema, config_hash: str) -> dict:
    row_id, problem_id, source, labels, mc, arithmetic, judge, truncated = values
    first_error = labels.index(False) if False in labels else -1
    row = {name: None for name in schema.names}
    row.update(
        id=row_id, problem_id=problem_id, source=source, prompt="Q: 1+1=?", completions=[f"Step {i + 1}" for i in range(len(labels))],
        labels=labels, mc_values=mc, n_correct=[4] * len(labels), n_rollouts=[4] * len(labels), label_policy="mc>0",
        first_error_index=first_error, truncated_after_first_error=truncated, is_terminal=not truncated,
        final_answer="2", outcome_correct=first_error < 0, gold_answer="2", policy_model="tiny", search="mc", seed=7,
        config_hash=config_hash, schema_version=tables.SCHEMA_VERSION, meta="{}",
        arithmetic_labels=arithmetic, arithmetic_reasons=["r"] * len(arithmetic), judge_labels=judge,
        judge_reasons=["j"] * len(judge), judge_first_error=judge.index(False) if False in judge else -1,
    )  # fmt: skip
    return row


def make_fake_run(root: Path, *, label_quality: dict | None = None) -> tuple[Path, dict]:
    """A run folder with every part the report reads; the manifest comes from `pipelines.manifest`."""
    config = config_from_dict(
        {
            "run": {"seed": 7, "name": "fake"},
            "input": {"path": str(root / "input.jsonl")},
            "policy": {"model": "tiny"},
            "annotators": {"arithmetic": {}},
            "judge": {"enabled": True},
            "search": {"num_solutions": 2, "completions_per_step": 2, "max_sequences_per_call": CAPACITY},
            "output": {"num_shards": 2},
        }
    )
    schema = tables.paths_schema(LabelSetting(LabelRule("mc>0"), ("arithmetic",), judge=True).columns())
    rows = [_path_row(p, schema, config.config_hash()) for p in PATHS]
    _write(root / "data" / "train-00000-of-00002.parquet", rows[:3], schema)
    _write(root / "data" / "train-00001-of-00002.parquet", rows[3:], schema)
    filtered_schema = tables.filtered_schema(schema)
    filtered = []
    for row_id, problem_id, source, reason in FILTERED:
        row = _path_row((row_id, problem_id, source, [T, F], [0.5, 0.0], [T, F], [T, T], False), schema, "h")
        filtered.append({**row, "drop_reason": reason})
    _write(root / "filtered" / "part-00000-of-00001.parquet", filtered, filtered_schema)
    solutions, completions = [], []
    for problem_id, n_solutions in (("p1", 2), ("p2", 1), ("p3", 2), ("p4", 1), ("p5", 2)):
        for s in range(n_solutions):
            solutions.append(
                {"problem_id": problem_id, "solution_index": s, "text": "t", "steps": ["a"], "n_tokens": 10}
            )
            for step in range(2):
                for c in range(2):
                    completions.append(
                        {"problem_id": problem_id, "solution_index": s, "step_index": step, "completion_index": c,
                         "text": "c", "correct": c == 0, "n_tokens": 5}
                    )  # fmt: skip
    _write(root / "evidence" / "solutions" / "part-00000-of-00001.parquet", solutions, tables.SOLUTIONS)
    _write(root / "evidence" / "completions" / "part-00000-of-00001.parquet", completions, tables.COMPLETIONS)
    (root / "dead_letters").mkdir(parents=True, exist_ok=True)
    (root / "dead_letters" / "dead_letters.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DEAD))
    (root / "_work").mkdir(parents=True, exist_ok=True)
    (root / "_work" / "engine_stats.json").write_text(json.dumps(ENGINE_STATS))
    manifest = manifest_lib.write_manifest(
        str(root), config, {"read.rows_read": 8}, wall_seconds=12.5, command="synthesize"
    )
    if label_quality is not None:
        manifest["label_quality"] = label_quality
        (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return root, manifest


# ---------------------------------------------------------------- reading the report back


class _ReportParser(HTMLParser):
    """Collects the `data-key` cells per table id, the embedded images and the figures JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, str]] = {}
        self.images: dict[str, str] = {}
        self.external: list[str] = []
        self.figures_json = ""
        self._table: str | None = None
        self._cell: str | None = None
        self._in_figures = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for name in ("src", "href"):
            if attributes.get(name) and not str(attributes[name]).startswith(("data:", "#")):
                self.external.append(str(attributes[name]))
        if tag in ("link", "iframe", "object", "embed"):
            self.external.append(tag)
        if tag == "table":
            self._table = str(attributes.get("id", "")).removeprefix("table-")
            self.tables.setdefault(self._table, {})
        elif tag == "td" and "data-key" in attributes:
            self._cell = str(attributes["data-key"])
            self.tables[str(self._table)][self._cell] = ""
        elif tag == "img":
            self.images[str(attributes["data-plot"])] = str(attributes["src"])
        elif tag == "script" and attributes.get("id") == report.FIGURES_ID:
            self._in_figures = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "script":
            self._in_figures = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self.tables[str(self._table)][self._cell] += data
        if self._in_figures:
            self.figures_json += data


def parse_report(path: Path) -> _ReportParser:
    parser = _ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def flat(value, prefix: str = "") -> dict:
    """The manifest's nested dicts as dotted keys (written here again, independent of the report's own)."""
    if isinstance(value, dict) and value:
        out = {}
        for key, inner in value.items():
            out.update(flat(inner, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: value}


def shown(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def check_png(path: Path) -> tuple[int, int]:
    """A PNG by its signature, an IHDR chunk with a valid CRC, and a decode by matplotlib; returns (w, h)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, path
    width, height = struct.unpack(">II", data[16:24])
    (crc,) = struct.unpack(">I", data[16 + length : 20 + length])
    assert crc == zlib.crc32(data[12 : 16 + length]), path
    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert pixels.shape[:2] == (height, width) and pixels.std() > 0, path  # decodes, and is not a blank image
    return width, height


def check_report_against_manifest(html_path: Path, manifest: dict, expected_plots: list[str]) -> dict:
    """The checks every rendered report must pass; returns the figures JSON."""
    folder = html_path.parent
    parsed = parse_report(html_path)
    assert parsed.external == []  # self-contained: nothing fetched from anywhere
    for stem in expected_plots:
        check_png(folder / f"{stem}.png")
        assert (
            base64.b64decode(parsed.images[stem].removeprefix("data:image/png;base64,"))
            == (folder / f"{stem}.png").read_bytes()
        )
    assert sorted(parsed.images) == sorted(expected_plots)
    assert sorted(p.stem for p in folder.glob("*.png")) == sorted(expected_plots)

    figures = json.loads(parsed.figures_json)
    assert figures == json.loads(json.dumps(report.report_figures(report.load_run(folder.parent))))
    for section in ("counts", "engine", "timings", "label_quality"):
        if not manifest.get(section):
            assert section not in figures["tables"] and not any(t.startswith(section) for t in parsed.tables)
            continue
        expected = flat(manifest[section])
        assert figures["tables"][section] == expected, section
        cells = {k: v for name, table in parsed.tables.items() if name.startswith(section) for k, v in table.items()}
        assert cells == {k: shown(v) for k, v in expected.items()}, section
    for key in ("config_hash", "code_version", "schema_version", "command"):
        assert figures["tables"]["run"][key] == manifest[key]
        assert parsed.tables["run"][key] == manifest[key]

    plots = figures["plots"]
    counts = manifest["counts"]
    balance = plots["label_balance"]["by_source"]
    assert sum(b["positive"] for b in balance.values()) == counts["steps_positive"]
    assert sum(b["negative"] for b in balance.values()) == counts["steps_negative"]
    assert sum(b["unknown"] for b in balance.values()) == 0
    assert plots["label_balance"]["by_annotator"]["labels"] == {
        "positive": counts["steps_positive"],
        "negative": counts["steps_negative"],
        "unknown": 0,
    }
    assert plots["first_error_position"]["paths"] == counts["paths"]
    rejections = plots["dead_letters_and_filtered"]
    assert rejections["dead_letters"] == counts["dead_lettered"]
    assert rejections["dead_letters_by_reason"] == counts["dead_letters_by_reason"]
    assert rejections["dead_letters_by_stage"] == counts["dead_letters_by_stage"]
    if "filtered" in counts:
        assert rejections["filtered_by_reason"] == counts["filtered_by_reason"]
        assert rejections["filtered"] == counts["filtered"]
    cost = plots["search_cost"]["by_method"]
    assert sum(m["labelled_steps"] for m in cost.values()) == counts["steps"]
    assert sum(m["solutions"] for m in cost.values()) == counts["solutions"]
    # Each generated completion once: as many as the engine generated plus those the cache served.
    generated = sum(m["solutions"] + m["completions"] for m in cost.values())
    if manifest["engine"].get("sequences") is not None and not (manifest["config"].get("judge") or {}).get("enabled"):
        assert generated == manifest["engine"]["sequences"] + manifest["engine"].get("cache_sample_hits", 0)
    else:
        assert sum(m["completions"] for m in cost.values()) <= counts["completions"]
    engine = manifest["engine"]
    fill = plots["batch_fill"]
    assert fill["engine_calls"] == engine["engine_calls"]
    assert fill["unit"] == engine.get("fill_unit", "call")
    if fill["unit"] == "call":  # per engine step (request-level driver) it counts sequences in flight, not sent
        assert sum(fill["call_sequences"]) == engine["sequences"]
    assert fill["batch_capacity"] == engine["batch_capacity"]
    assert fill["batch_fill_mean"] == engine["batch_fill_mean"]
    assert fill["batch_fill_p10"] == engine["batch_fill_p10"]
    return figures


# ---------------------------------------------------------------- tests on the fake run


@pytest.fixture
def fake_run(tmp_path: Path) -> tuple[Path, dict]:
    return make_fake_run(tmp_path / "run")


def test_fake_run_report_has_every_plot_and_matches_the_manifest(fake_run):
    run, manifest = fake_run
    html_path = report.write_report(run)
    assert html_path == run / "report" / "report.html"
    figures = check_report_against_manifest(html_path, manifest, ALL_PLOTS)
    assert manifest["counts"]["balanced"] is True

    plots = figures["plots"]
    first = plots["first_error_position"]
    # errors at steps 1 (p1-1), 0 (p2-0), 3 (p3-0), 1 (p3-1, truncated: absolute only)
    assert first["absolute"] == {"step_index": [0, 1, 2, 3], "counts": [1, 2, 0, 1]}
    assert (first["paths_with_error"], first["paths_without_error"], first["paths_truncated_after_error"]) == (4, 2, 1)
    assert first["relative"]["counts"] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 1]  # 0.0, 1/2, 3/3
    assert plots["mc_values"]["steps_with_value"] == 14 and plots["mc_values"]["steps_without_value"] == 1
    assert plots["label_balance"]["by_source"] == {
        "gsm": {"positive": 4, "negative": 3, "unknown": 0},
        "math": {"positive": 6, "negative": 2, "unknown": 0},
    }
    assert plots["label_balance"]["by_annotator"]["arithmetic"] == {"positive": 7, "negative": 2, "unknown": 6}

    agreement = plots["annotator_agreement"]
    assert agreement["annotators"] == ["labels", "arithmetic", "judge"]
    labels_vs_arithmetic = (0, 1)
    # steps both labelled: p1-0 x2, p1-1 x2, p2-0, p3-1 x2, p4-0 x2 = 9; they differ only at p3-1 step 1
    assert agreement["n"][0][1] == agreement["n"][1][0] == 9
    assert agreement["agreement"][labels_vs_arithmetic[0]][labels_vs_arithmetic[1]] == round(8 / 9, 4)
    assert agreement["n"][0][0] == 15 and agreement["agreement"][0][0] == 1.0
    # labels vs judge over 15 steps: they differ at p1-1 step 2 and p2-0 step 0
    assert agreement["agreement"][0][2] == round(13 / 15, 4)

    cost = plots["search_cost"]["by_method"]["mc"]
    assert (cost["labelled_steps"], cost["solutions"], cost["completions"]) == (15, 8, 32)
    assert cost["generated_tokens"] == 8 * 10 + 32 * 5
    assert cost["completions_per_step"] == round(32 / 15, 4)

    fill = plots["batch_fill"]
    assert fill["call_sequences"] == [8, 12, 4, 16, 2]
    assert fill["batch_ends"] == [3]
    assert fill["fills"] == [0.5, 0.75, 0.25, 1.0, 0.125]

    html_text = html_path.read_text()
    assert "not available in this run" not in html_text
    assert not manifest.get("label_quality") and 'id="table-label_quality' not in html_text


EXACT_QUALITY = {  # the shape `annotators.exact.exact_quality` writes for an arithmetic-domain run
    "exact_arithmetic": {
        "n_paths": 6,
        "mc": {"first_error_agreement": 0.5, "by_chain_length": {"2": 0.5, "3": 1.0}, "step_accuracy": 0.9,
               "steps_scored": 15},
        "arithmetic": {"first_error_agreement": None, "by_chain_length": {}, "step_accuracy": None, "steps_scored": 0},
    }
}  # fmt: skip


@pytest.mark.parametrize(
    ("quality", "table", "expected"),
    [
        (
            {"judge": {"f1": 0.75, "accuracy": 0.8, "n": 40}, "arithmetic": {"f1": 0.5, "coverage": 0.6}},
            "label_quality",
            {"judge.f1": "0.75", "judge.accuracy": "0.8", "judge.n": "40", "arithmetic.f1": "0.5",
             "arithmetic.coverage": "0.6"},
        ),
        (
            EXACT_QUALITY,
            "label_quality-exact_arithmetic",
            {"exact_arithmetic.mc.first_error_agreement": "0.5", "exact_arithmetic.mc.by_chain_length.2": "0.5",
             "exact_arithmetic.mc.by_chain_length.3": "1.0", "exact_arithmetic.mc.step_accuracy": "0.9",
             "exact_arithmetic.mc.steps_scored": "15", "exact_arithmetic.arithmetic.first_error_agreement": "null",
             "exact_arithmetic.arithmetic.by_chain_length": "{}", "exact_arithmetic.arithmetic.step_accuracy": "null",
             "exact_arithmetic.arithmetic.steps_scored": "0"},
        ),
    ],
)  # fmt: skip
def test_label_quality_is_shown_when_the_manifest_has_it(tmp_path, quality, table, expected):
    run, manifest = make_fake_run(tmp_path / "run", label_quality=quality)
    html_path = report.write_report(run)
    check_report_against_manifest(html_path, manifest, ALL_PLOTS)
    parsed = parse_report(html_path)
    assert parsed.tables[table] == expected  # annotators as rows of one matrix


def test_report_bytes_are_deterministic(fake_run, tmp_path):
    run, _ = fake_run
    first = report.write_report(run, tmp_path / "a" / "report.html")
    second = report.write_report(run, tmp_path / "b" / "report.html")
    assert first.read_bytes() == second.read_bytes()
    for stem in ALL_PLOTS:
        assert (first.parent / f"{stem}.png").read_bytes() == (second.parent / f"{stem}.png").read_bytes()
        assert b"Software" not in (first.parent / f"{stem}.png").read_bytes()


def test_missing_optional_parts_say_not_available(fake_run):
    run, manifest = fake_run
    report.write_report(run)
    assert (run / "report" / "batch_fill.png").exists()
    for part in ("_work/engine_stats.json", "dead_letters/dead_letters.jsonl"):
        (run / part).unlink()
    for folder in ("evidence", "filtered"):
        for path in (run / folder).rglob("*.parquet"):
            path.unlink()
    table = pq.read_table(run / "data" / "train-00000-of-00002.parquet")
    for shard in (run / "data").glob("*.parquet"):
        shard.unlink()
    keep = [n for n in table.column_names if not n.startswith(("arithmetic_", "judge_"))]
    pq.write_table(table.select(keep), run / "data" / "train-00000-of-00001.parquet")

    html_path = report.write_report(run)
    parsed = parse_report(html_path)
    present = ["first_error_position", "mc_values", "label_balance"]
    assert sorted(parsed.images) == sorted(present)
    assert sorted(p.stem for p in html_path.parent.glob("*.png")) == sorted(present)  # stale copies removed
    text = html_path.read_text()
    for stem in set(ALL_PLOTS) - set(present):
        section = text.split(f'id="plot-{stem}"')[1].split("</section>")[0]
        assert "not available in this run" in section, stem
    figures = json.loads(parsed.figures_json)
    assert figures["plots"]["annotator_agreement"]["reason"] == "only one label column (labels)"
    assert figures["plots"]["batch_fill"]["reason"] == "no _work/engine_stats.json"
    assert figures["tables"]["counts"] == flat(manifest["counts"])  # the manifest still shows as it is


def test_a_script_end_inside_the_data_cannot_break_the_page(fake_run):
    run, manifest = fake_run
    manifest["engine"]["model"] = "</script><script>alert(1)</script>"
    (run / "manifest.json").write_text(json.dumps(manifest))
    html_path = report.write_report(run)
    text = html_path.read_text()
    assert "<script>alert" not in text and text.count("</script>") == 1
    assert json.loads(parse_report(html_path).figures_json)["tables"]["engine"]["model"] == manifest["engine"]["model"]


def test_report_command_prints_the_path(fake_run, tmp_path, capsys):
    run, _ = fake_run
    parser = argparse.ArgumentParser()
    report.add_report_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(run)])
    assert args.func(args, []) == 0
    assert capsys.readouterr().out.strip() == str(run / "report" / "report.html")
    args = parser.parse_args(["report", str(run), "--output", str(tmp_path / "elsewhere" / "r.html")])
    assert args.func(args, []) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "elsewhere" / "r.html")
    assert (tmp_path / "elsewhere" / "batch_fill.png").exists()
    args = parser.parse_args(["report", str(tmp_path / "not-a-run")])
    assert args.func(args, []) == 2
    assert "no manifest" in capsys.readouterr().out


def test_a_dataset_root_with_one_run_resolves_to_it(tmp_path):
    run, _ = make_fake_run(tmp_path / "root" / "schema_v1" / "cfg_0123456789ab")
    assert report.write_report(tmp_path / "root") == run / "report" / "report.html"
    make_fake_run(tmp_path / "root" / "schema_v1" / "cfg_ba9876543210")
    with pytest.raises(ValueError, match="holds 2 runs"):
        report.write_report(tmp_path / "root")


# ---------------------------------------------------------------- a real demo run with the tiny model


@pytest.mark.slow
@pytest.mark.skipif(
    not (MODEL / "config.json").exists(),
    reason=f"real demo run needs the tiny model at {MODEL} (build it with `python -m models.build_tiny_model`)",
)
def test_real_demo_run_report(tmp_path):
    run = tmp_path / "demo"
    command = [sys.executable, str(REPO / "run.py"), "demo", "--output", str(run), "--problems", "6",
               "--set", "search.num_solutions=2", "--set", "search.completions_per_step=2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, cwd=REPO, env=env, timeout=900, capture_output=True)
    html_path = report.write_report(run)  # the dataset root: the report finds the one run under schema_vN/cfg_*/
    manifest = json.loads((html_path.parent.parent / "manifest.json").read_text())
    assert html_path.parent.parent.parent.name.startswith("schema_v")
    available = json.loads(parse_report(html_path).figures_json)["plots"]
    expected = [stem for stem in ALL_PLOTS if available[stem]["available"]]
    assert set(ALL_PLOTS) - set(expected) <= {"annotator_agreement"}  # the demo has one label column
    figures = check_report_against_manifest(html_path, manifest, expected)
    assert figures["plots"]["dead_letters_and_filtered"]["dead_letters_by_stage"].get("read") == 2  # planted rows


def test_omegaprm_rollouts_count_as_completions_of_their_method(fake_run):
    from schemas.tables import OMEGAPRM_NODES

    run, _ = fake_run
    rollout = {"text": "r", "correct": True, "n_tokens": 7, "finish_reason": "stop", "selected": False, "seed": 1}
    nodes = [
        {"problem_id": "p9", "node_id": 0, "prefix": "", "rollouts": [rollout, rollout, rollout]},
        {"problem_id": "p9", "node_id": 1, "parent_id": 0, "prefix": "a", "rollouts": [rollout]},
    ]
    _write(run / "evidence" / "omegaprm_nodes" / "part-00000-of-00001.parquet", nodes, OMEGAPRM_NODES)
    schema = tables.paths_schema(LabelSetting(LabelRule("mc>0"), ("arithmetic",), judge=True).columns())
    row = _path_row(("p9-0", "p9", "math", [T, T, F], [1.0, 0.5, 0.0], [T, T, F], [T, T, F], True), schema, "h")
    _write(run / "data" / "train-00002-of-00002.parquet", [{**row, "search": "omegaprm"}], schema)
    figures = report.report_figures(report.load_run(run))
    cost = figures["plots"]["search_cost"]["by_method"]
    assert cost["omegaprm"] == {
        "labelled_steps": 3,
        "solutions": 0,
        "completions": 4,
        "solution_tokens": 0,
        "completion_tokens": 28,
        "generated_tokens": 28,
        "completions_per_step": round(4 / 3, 4),
        "generated_tokens_per_step": round(28 / 3, 2),
    }
    assert cost["mc"]["completions"] == 32
    html_path = report.write_report(run)
    check_png(html_path.parent / "search_cost.png")


def test_a_relabel_reads_its_parents_evidence(fake_run, tmp_path):
    import shutil

    parent, manifest = fake_run
    child = tmp_path / "child"
    for part in ("data", "filtered", "dead_letters"):
        shutil.copytree(parent / part, child / part)
    manifest = {**manifest, "command": "annotate", "lineage": {"parent_run": str(parent)}}
    (child / "manifest.json").write_text(json.dumps(manifest))
    figures = json.loads(parse_report(report.write_report(child)).figures_json)
    assert figures["plots"]["search_cost"]["by_method"]["mc"]["completions"] == manifest["counts"]["completions"]
    assert figures["plots"]["batch_fill"]["reason"] == f"relabelled from {parent} with no engine call"
    assert figures["tables"]["run"]["parent_run"] == str(parent)


def test_cost_counts_a_completion_shared_by_two_solutions_once(tmp_path):
    # Solutions 0 and 1 share their first step: the MC search asked for that prefix once (same seed), and the
    # completions table holds its 2 completions under each solution. The second step differs (its own seed).
    completions = {"problem_id": [], "n_tokens": [], "seed": [], "completion_index": []}
    for solution in (0, 1):
        for seed in (11, 20 + solution):
            for index in (0, 1):
                for name, value in (("problem_id", "p"), ("n_tokens", 5), ("seed", seed), ("completion_index", index)):
                    completions[name].append(value)
    run = report.RunFiles(
        run_dir=tmp_path,
        manifest={},
        paths={"search": ["mc", "mc"], "labels": [[True, False, False], [True, True, False]], "problem_id": ["p", "p"]},
        label_columns=["labels"],
        filtered=None,
        solutions={"problem_id": ["p", "p"], "n_tokens": [10, 10]},
        completions=completions,
        nodes=None,
        dead_letters=None,
        engine_stats=None,
    )
    cost = report.cost_figures(run)["by_method"]["mc"]
    assert (cost["solutions"], cost["completions"]) == (2, 6)  # 8 rows, 6 generated
    assert cost["generated_tokens"] == 2 * 10 + 6 * 5
    assert cost["completions_per_step"] == 1.0
    completions["seed"] = [None] * len(completions["seed"])  # tables without seeds: no row can be matched
    assert report.cost_figures(run)["by_method"]["mc"]["completions"] == 8


def test_a_retention_warning_shows_in_the_report_and_the_card(fake_run):
    from pipelines.card import render_card

    run, manifest = fake_run
    assert manifest["warnings"] == []  # the fake run keeps most of its rows
    manifest["warnings"] = ["filter consensus dropped 9 of 10 rows (90.0%); kept 1; kept by source: gsm8k 1/10"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert f"Warning: {manifest['warnings'][0]}" in report.write_report(run).read_text()
    assert f"## Warnings\n\n- {manifest['warnings'][0]}\n" in render_card(run)


def test_the_manifest_records_its_spend_and_the_report_shows_it(fake_run):
    from annotators.run_cost import GPUS, gpu_cost

    run, manifest = fake_run
    spend, engine = manifest["spend"], manifest["engine"]
    assert (spend["sequences"], spend["generated_tokens"]) == (engine.get("sequences", 0), engine["generated_tokens"])
    assert set(spend["at"]) == set(GPUS)
    page = report.write_report(run).read_text()
    assert "<h2>Spend</h2>" in page
    for gpu in GPUS:
        cost = gpu_cost(engine["generated_tokens"], gpu)
        assert f"<td>{gpu}</td><td>{cost['gpu_hours'][0]:.3f} - {cost['gpu_hours'][1]:.3f}</td>" in page
