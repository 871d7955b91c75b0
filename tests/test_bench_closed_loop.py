"""The closed-loop benchmark's pure pieces (bench/bench_closed_loop.py): problem sets and the summary table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import bench_closed_loop as bench  # noqa: E402

from prm.bestofn import best_of_n, step_level_scores  # noqa: E402


def _problems(prm_right: bool) -> list[list[dict]]:
    """Four problems of 4 samples: one right answer, three wrong ones sharing an answer (the majority is wrong)."""
    problems = []
    for _ in range(4):
        samples = [{"answer": "7", "correct": True, "prm_min": 0.9 if prm_right else 0.1}]
        samples += [{"answer": "9", "correct": False, "prm_min": 0.5} for _ in range(3)]
        problems.append(samples)
    return problems


def _result(ns=(4,)) -> dict:
    prms = {}
    for name, right in (("exact", True), ("mc", False)):
        table = best_of_n(_problems(right), ns, methods=("prm_min", "majority", "random", "oracle"), seed=0)
        step = step_level_scores([[0.9, 0.2], [0.9, 0.9]], [1, -1] if right else [-1, -1])
        prms[name] = {"best_of_n": table, "step_level": step}
    return {"prms": prms}


def test_summary_reports_each_labelling_against_majority_and_the_exact_ceiling():
    summary = bench.summary(_result(), (4,))
    exact, mc = summary["prm_min"]["exact"], summary["prm_min"]["mc"]
    assert exact["best_of_4"][0] == 1.0 and mc["best_of_4"][0] == 0.0
    assert exact["best_of_4_beats_majority"] is True and mc["best_of_4_beats_majority"] is False
    assert exact["best_of_4_vs_majority"][0] == 1.0
    assert mc["gap_to_exact"]["best_of_4"] == 1.0 and "gap_to_exact" not in exact
    assert summary["baselines"]["majority"]["best_of_4"][0] == 0.0
    assert summary["baselines"]["random"]["best_of_4"][0] == 0.25
    assert summary["baselines"]["oracle"]["best_of_4"][0] == 1.0
    assert "orm" not in summary["baselines"]


def test_heldout_problems_share_no_question_with_training(tmp_path):
    train, heldout = bench.write_problems(tmp_path, 60, 60, 5, 6)
    seen = {json.loads(line)["question"] for line in train.read_text().splitlines()}
    held = [json.loads(line)["question"] for line in heldout.read_text().splitlines()]
    assert held and not seen & set(held)
    before = train.stat().st_mtime_ns
    bench.write_problems(tmp_path, 60, 60, 5, 6)  # same setting: files left as they are
    assert train.stat().st_mtime_ns == before
