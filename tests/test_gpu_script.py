"""bench/gpu.sh and bench/bench_gpu.py: the plan, the time caps and the table (a fake runner), the script's syntax,
and (slow) the CPU dry run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))

import bench_gpu  # noqa: E402

RUNS = [(method, driver) for method in bench_gpu.METHODS for driver in bench_gpu.DRIVERS]


def test_gpu_script_parses() -> None:
    subprocess.run(["bash", "-n", str(REPO_ROOT / "bench" / "gpu.sh")], check=True)


def test_dry_run_plan_is_tiny_and_covers_both_kinds() -> None:
    models, left_out = bench_gpu.plans(dry_run=True)
    assert left_out == []
    assert [m.model is None for m in models] == [False, True]  # a real model, then one built with random weights
    assert models[1].architecture["num_hidden_layers"] == 2
    assert all("cache.enabled=false" in m.overrides for m in models)


def test_device_plan_builds_a_1b_model_and_says_what_it_left_out(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(bench_gpu, "SMOLLM2", tmp_path / "absent")
    models, left_out = bench_gpu.plans(dry_run=False)
    assert [m.name for m in models] == ["random-1b"]
    assert len(left_out) == 1 and left_out[0].startswith("smollm2-135m: no ")
    assert "policy.enforce_eager=true" in models[0].overrides
    config = bench_gpu.LLAMA_1B
    per_layer = 2 * config["hidden_size"] ** 2 + 2 * config["hidden_size"] * 512 + 3 * config["hidden_size"] * 8192
    assert 0.9e9 < config["num_hidden_layers"] * per_layer < 1.1e9


def test_random_model_is_built_from_a_config(tmp_path) -> None:
    out = bench_gpu.build_random_model(bench_gpu.LLAMA_TINY, bench_gpu.TINY, tmp_path / "model")
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == 274 and config["num_hidden_layers"] == 2
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (out / "model.safetensors").exists()


def test_gsm8k_copies_get_their_own_ids(tmp_path) -> None:
    path, overrides = bench_gpu.write_plan_problems("gsm8k:2", tmp_path / "p.jsonl")
    ids = [json.loads(line)["problem_id"] for line in path.read_text().splitlines()]
    assert len(ids) == 16 == len(set(ids)) and overrides == ["input.id_field=problem_id"]
    with pytest.raises(ValueError, match="unknown problems"):
        bench_gpu.write_plan_problems("math:3", tmp_path / "q.jsonl")


def fake_row(model: str, method: str, driver: str) -> dict:
    figures = {"problems": 4, "generated_tokens": 1000, "pipeline_tokens_per_s": 50.0}
    figures.update(
        search_stage_tokens_per_s=90.0,
        raw_tokens_per_s=100.0,
        ratio_search_to_raw=0.9,
        search_step_fill=0.5,
        raw_step_fill=0.7,
    )
    return {"model": model, "method": method, "driver": driver, **figures}


def test_run_all_gives_every_model_a_share_and_lists_every_run(tmp_path) -> None:
    models, _ = bench_gpu.plans(dry_run=True)
    deadlines = []

    def launch(plan, index, work, deadline, rows_path):
        deadlines.append(deadline)
        if index == 0:  # the first model writes three of its four rows, then fails
            for method, driver in RUNS[:3]:
                bench_gpu.append_row(rows_path, fake_row(plan.name, method, driver))
            return "exit status 1"
        for method, driver in reversed(RUNS):
            bench_gpu.append_row(rows_path, fake_row(plan.name, method, driver))
        return None

    started = time.time()
    rows = bench_gpu.run_all(models, tmp_path, 300.0, launch)
    first_share = (300.0 - bench_gpu.GRACE_S) / 2
    assert deadlines[0] == pytest.approx(started + first_share, abs=5)
    assert deadlines[1] <= started + 300.0 + 1
    assert [(r["model"], r["method"], r["driver"]) for r in rows] == [(m.name, *run) for m in models for run in RUNS]
    assert rows[3]["skipped"] == "exit status 1"
    text = bench_gpu.table(rows)
    lines = text.splitlines()
    assert len(lines) == 2 + 8
    assert f"| tiny-arith (for smollm2) | {RUNS[3][0]} | {RUNS[3][1]} | not run: exit status 1 |" in text
    assert lines[2].split(" | ")[-3:] == ["0.9", "0.5", "0.7 |"]


@pytest.mark.slow
def test_dry_run_prints_every_row(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    result = subprocess.run(
        [str(REPO_ROOT / "bench" / "gpu.sh"), "--dry-run", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout[: result.stdout.rindex("\n}") + 2])
    assert len(figures["rows"]) == 8
    for row in figures["rows"]:
        assert "skipped" not in row, row
        assert row["raw_tokens_per_s"] > 0 and 0 < row["search_step_fill"] <= 1
    assert len([line for line in result.stdout.splitlines() if line.startswith("| ")]) == 1 + 8
