"""`stepforge estimate` and the manifest's spend: the search formulas by hand, calibration from a run's manifest."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from annotators.run_cost import (
    GPUS,
    Calibration,
    calibration_from_manifest,
    default_calibration,
    estimate,
    gpu_cost,
    mc_sequences_per_problem,
    omegaprm_sequences_per_problem,
    spend,
)
from schemas.config import config_from_dict

REPO = Path(__file__).resolve().parents[1]


def search(**overrides) -> dict:
    base = {"input": {"path": "p.jsonl"}, "policy": {"model": "m"}}
    return config_from_dict(base, [f"search.{k}={json.dumps(v)}" for k, v in overrides.items()]).to_dict()["search"]


def test_mc_counts_solutions_and_k_completions_per_prefix_but_the_last():
    # N = 4 solutions of 5 steps: 4 + 4 * 8 * (5 - 1) = 132 sequences (annotators/mc.py: k·(K−1) per solution).
    assert mc_sequences_per_problem(4, 8, 5.0) == 132
    assert mc_sequences_per_problem(4, 8, 1.0) == 4  # a one-step solution is graded by its answer alone


def test_omegaprm_bound_is_the_auto_rollout_budget():
    # docs/omegaprm.md: prefilter + k + search_limit * k * ceil(log2 M); M = 8 gives 2,408, M = 16 gives 3,208.
    assert omegaprm_sequences_per_problem(search(method="omegaprm"), 8.0) == 2408
    assert omegaprm_sequences_per_problem(search(method="omegaprm"), 16.0) == 3208
    assert omegaprm_sequences_per_problem(search(method="omegaprm", prefilter=True), 8.0) == 2408 + 32
    capped = search(method="omegaprm", omegaprm={"rollout_budget": 500})
    assert omegaprm_sequences_per_problem(capped, 16.0) == 500


def test_estimate_scales_tokens_hours_and_dollars():
    calibration = Calibration(tokens_per_sequence=100.0, steps_per_solution=5.0, source="test")
    result = estimate(search(num_solutions=4, completions_per_step=8), 1000, calibration, "a100")
    assert result["sequences"] == 132_000 and result["generated_tokens"] == 13_200_000
    slow, fast = GPUS["a100"].tokens_per_second
    assert result["gpu_hours"] == (round(13_200_000 / fast / 3600, 3), round(13_200_000 / slow / 3600, 3))
    low, high = result["dollars"]
    assert 0 < low < high
    assert estimate(search(), 2000, calibration, "a100")["generated_tokens"] == 2 * result["generated_tokens"]


def test_a_finished_run_calibrates_and_its_own_spend_is_measured():
    manifest = {
        "config": {"search": search(num_solutions=4, completions_per_step=8)},
        "engine": {"sequences": 680, "generated_tokens": 19928},
        "counts": {"problems_labelled": 12, "paths": 48, "steps": 180},
    }
    calibration = calibration_from_manifest(manifest, "RUN")
    assert calibration.tokens_per_sequence == pytest.approx(19928 / 680)
    assert calibration.steps_per_solution == pytest.approx(180 / 48)
    same = estimate(search(num_solutions=4, completions_per_step=8, problems_per_batch=3), 12, calibration)
    assert same["sequences"] == 680 and "measured by RUN" in same["sequences_per_problem_from"]  # batching aside
    other = estimate(search(num_solutions=8, completions_per_step=8), 12, calibration)
    assert other["sequences"] == round(12 * mc_sequences_per_problem(8, 8, 180 / 48))
    with pytest.raises(ValueError, match="no generated sequences"):
        calibration_from_manifest({"engine": {}, "counts": {}}, "relabel")
    recorded = spend(manifest["engine"], manifest["counts"])
    assert recorded["sequences_per_problem"] == round(680 / 12, 2)
    assert recorded["at"]["h100"] == gpu_cost(19928, "h100")


def test_default_calibration_is_documented_and_from_the_config():
    assert default_calibration(96) == Calibration(48.0, 6.0, "default")


def test_estimate_command_prints_the_figures(tmp_path):
    out = tmp_path / "estimate.json"
    argv = ["run.py", "estimate", "--config", "configs/omegaprm.yaml", "--problems", "100", "--gpu", "h100"]
    done = subprocess.run(
        [sys.executable, *argv, "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert f"{result['sequences']:,}" in done.stdout and "NVIDIA H100 80GB" in done.stdout
    assert result["sequences_per_problem_from"] == "upper bound (rollout budget)"
    missing = subprocess.run(
        [sys.executable, *argv, "--from", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 2 and "not a finished run" in missing.stderr
