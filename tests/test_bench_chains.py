"""The chains benchmark's pure pieces (bench/bench_chains.py) on hand-made rows: no engine, no pipeline."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import bench_chains as bench  # noqa: E402

from annotators.cost import StepCounts  # noqa: E402
from annotators.evaluation import processbench_scores  # noqa: E402

Q = "Q: 37+5-8+6-10=?"  # running totals 42, 34, 40, 30
GOLD = ["Step 1: 37+5=42", "Step 2: 42-8=34", "Step 3: 34+6=40", "Step 4: 40-10=30 Answer: 30"]
WRONG = ["Step 1: 37+5=42", "Step 2: 42-8=35", "Step 3: 35+6=41", "Step 4: 41-10=31 Answer: 31"]  # error at 1
PROBLEM = {"expression": "37+5-8+6-10", "answer": "30", "num_steps": 4}


def row(problem: str, steps: list[str], first_error: int, truncated: bool = False) -> dict:
    return {
        "problem_id": problem,
        "prompt": Q,
        "completions": steps,
        "first_error_index": first_error,
        "truncated_after_first_error": truncated,
    }


def test_buckets_cover_4_to_32() -> None:
    assert [bench.bucket_of(m) for m in (3, 4, 7, 8, 15, 16, 32, 33)] == [
        None,
        "4-7",
        "4-7",
        "8-15",
        "8-15",
        "16-32",
        "16-32",
        None,
    ]
    assert bench.bucket_of(9, [(8, 9)]) == "8-9"


def test_predicted_saving_is_the_cost_model_of_the_docs() -> None:
    # docs/omegaprm.md, "A cost model": M = 4 gives 0.94 / 1.50 / 1.13, M = 32 gives 3.20 / 6.20 / 1.16.
    assert bench.predicted_saving(4) == pytest.approx({"emitted": 15 / 16, "decided": 1.5, "measured": 9 / 8})
    saving = bench.predicted_saving(32)
    assert round(saving["emitted"], 2) == 3.2 and saving["decided"] == 6.2 and round(saving["measured"], 2) == 1.16
    assert bench.predicted_saving(9)["decided"] == 2.0  # just past a power of two: one probe more, the worst case


def test_f1_counts_paths_by_their_exact_truth() -> None:
    rows = [
        row("a", GOLD, -1),  # correct path, said correct: right
        row("a", GOLD, 2),  # correct path, error claimed: wrong
        row("b", WRONG, 1),  # error at 1, found: right
        row("b", WRONG, -1),  # error at 1, missed: wrong
        row("b", WRONG[:2], 1, truncated=True),  # a first-error path on the true error: right
        row("c", GOLD[:2], 1, truncated=True),  # a first-error path on a right step: a correct path, wrong
        {**row("x", GOLD, -1), "prompt": "Q: hello"},  # outside the arithmetic domain: left out
    ]
    counts = bench.f1_tally(rows)
    assert counts == {"a": [0, 0, 1, 2], "b": [2, 3, 0, 0], "c": [0, 0, 0, 1]}
    total = bench.summed(counts, ["a", "b", "c"])
    assert total == [2, 3, 1, 3]
    reference = processbench_scores([-1, 2, 1, -1, 1, 1], [-1, -1, 1, 1, 1, -1])
    assert bench.f1_of(total) == pytest.approx(reference["f1"])  # 2 * (2/3) * (1/3) / 1 = 4/9
    assert bench.processbench(rows) == {"acc_err": 0.6667, "acc_cor": 0.3333, "f1": 0.4444, "n_err": 3, "n_cor": 3}
    assert bench.f1_of([1, 1, 0, 0]) is None  # no correct path: F1 undefined, as ProcessBench's NaN
    assert bench.f1_of([0, 1, 0, 1]) == 0.0
    assert bench.processbench([row("b", WRONG, 1)])["f1"] is None


def test_paired_f1_difference() -> None:
    problems = list("abcdefgh")
    perfect = bench.f1_tally([r for p in problems for r in (row(p, GOLD, -1), row(p, WRONG, 1))])
    half = bench.f1_tally([r for p in problems for r in (row(p, GOLD, -1), row(p, WRONG, 1 if p in "abcd" else 0))])
    drawn = bench.bootstrap_draws(problems, 500, 0)
    assert bench.paired_f1_difference(perfect, perfect, problems, drawn) == {"difference": 0.0, "low": 0.0, "high": 0.0}
    diff = bench.paired_f1_difference(perfect, half, problems, drawn)
    assert diff["difference"] == pytest.approx(1 - 2 * 0.5 / 1.5, abs=1e-4)  # F1 1 against 2/3
    assert 0 < diff["low"] <= diff["difference"] <= diff["high"]
    only_errors = bench.f1_tally([row(p, WRONG, 1) for p in problems])
    assert bench.paired_f1_difference(only_errors, perfect, problems, drawn)["difference"] is None


def method(name: str, omegaprm: bool, rows: list[dict], samples: dict, steps: dict, k: int = 4) -> bench.Method:
    by_problem: dict[str, list[dict]] = {}
    for r in rows:
        by_problem.setdefault(r["problem_id"], []).append(r)
    return bench.Method(name, k, omegaprm, by_problem, samples, dict.fromkeys(samples, 100), steps)


def test_cost_and_matched_quality_in_a_bucket() -> None:
    problems = list("abcdefgh")
    both = [r for p in problems for r in (row(p, GOLD, -1), row(p, WRONG[:2], 1, truncated=True))]
    # OmegaPRM: every label right; 12 samples per problem, 4 emitted / 6 decided / 3 measured steps; it also paid
    # 8 samples on problem z, where it labelled nothing (root all wrong), which count in its cost.
    omega_steps = {p: StepCounts(emitted=4, decided=6, measured=3) for p in problems}
    omega = method("omegaprm_k4", True, both, {p: 12 for p in problems} | {"z": 8}, omega_steps)
    assert bench.cost_per_step(omega.samples, omega.steps, [*problems, "z"]) == {
        "emitted": round(104 / 32, 3),
        "decided": round(104 / 48, 3),
        "measured": round(104 / 24, 3),
    }
    mc_rows = [r for p in problems for r in (row(p, GOLD, -1), row(p, WRONG, 1))]
    mc_steps = {p: StepCounts(emitted=7, decided=7, measured=6) for p in problems + ["z"]}
    cheap_and_worse = [r for p in problems for r in (row(p, GOLD, -1), row(p, WRONG, 0))]
    baselines = [
        method("mc_k4", False, cheap_and_worse, dict.fromkeys([*problems, "z"], 21), mc_steps),
        method("mc_k8", False, mc_rows, dict.fromkeys([*problems, "z"], 42), mc_steps, k=8),
        method("mc_k32", False, mc_rows, dict.fromkeys([*problems, "z"], 168), mc_steps, k=32),
    ]
    out = bench.matched_in_bucket(omega, baselines, [*problems, "z"], draws=300)
    assert out["problems_labelled"] == 8 and out["f1"] == 1.0
    by_name = {b["baseline"]: b for b in out["baselines"]}
    assert by_name["mc_k32"]["samples_per_step"]["decided"] == 24.0  # on the 8 problems OmegaPRM labelled only
    assert by_name["mc_k4"]["f1"] == 0.0 and by_name["mc_k4"]["f1_difference"]["low"] == 1.0
    assert by_name["mc_k32"]["f1_difference"] == {"difference": 0.0, "low": 0.0, "high": 0.0}
    # Equal to the dearest MC run, so that is the match: 168 / 7 against 104 / 48 samples per decided step.
    verdict = out["not_significantly_worse"]
    assert verdict["baseline"] == "mc_k32"
    assert verdict["cost_ratio"]["decided"] == round(24.0 / round(104 / 48, 3), 3)
    assert out["point"]["baseline"] == "mc_k32"


def test_matched_quality_none_when_worse_than_every_baseline() -> None:
    problems = list("abcdefgh")
    steps = {p: StepCounts(emitted=4, decided=4, measured=4) for p in problems}
    omega = method("omegaprm_k4", True, [r for p in problems for r in (row(p, GOLD, 0), row(p, WRONG, 0))], {}, steps)
    mc = method("mc_k4", False, [r for p in problems for r in (row(p, GOLD, -1), row(p, WRONG, 1))], {}, steps)
    out = bench.matched_in_bucket(omega, [mc], problems, draws=200)
    assert out["not_significantly_worse"] == {
        "baseline": None,
        "cost_ratio": None,
        "reason": "worse than every MC run",
    }
    only_errors = method("mc_k8", False, [row(p, WRONG, 1) for p in problems], {}, steps, k=8)
    reason = bench.matched_in_bucket(omega, [only_errors], problems, draws=200)["not_significantly_worse"]["reason"]
    assert reason == "F1 undefined (no correct or no erroneous path) for mc_k8"
    reason = bench.matched_in_bucket(omega, [mc, only_errors], problems, draws=200)["not_significantly_worse"]["reason"]
    assert reason == "worse than every other MC run; F1 undefined (no correct or no erroneous path) for mc_k8"
    empty = bench.matched_in_bucket(omega, [mc], ["nothing"], draws=200)
    assert empty["problems_labelled"] == 0
    assert empty["not_significantly_worse"]["reason"] == "OmegaPRM labelled no problem here"


def test_compensated_slips_among_sampled_solutions() -> None:
    slip = "Step 1: 37+5=43 Step 2: 43-8=34 Step 3: 34+6=40 Step 4: 40-10=30 Answer: 30"  # wrong, then undone
    right = " ".join(GOLD)
    wrong = " ".join(WRONG)
    out = bench.compensated_slips(
        [("p", slip, "30"), ("p", right, "30"), ("p", wrong, "31"), ("p", "gibberish", None)], {"p": PROBLEM}
    )
    assert out == {
        "solutions": 4,
        "with_a_wrong_step": 3,
        "reaching_gold": 2,
        "compensated": 1,
        "compensated_of_wrong": 0.3333,
        "compensated_of_gold": 0.5,
    }


def test_ratio_table_and_plot(tmp_path: Path) -> None:
    ratio = {"emitted": 1.2, "decided": 2.5, "measured": 1.1}
    buckets = [
        {
            "bucket": "4-7",
            "mean_m": 5.5,
            "predicted_saving": {"emitted": 1.0, "decided": 1.8, "measured": 1.1},
            "matched": [
                {
                    "candidate": "omegaprm_k4",
                    "problems_labelled": 10,
                    "not_significantly_worse": {"baseline": "mc_k16", "cost_ratio": ratio},
                },
                {
                    "candidate": "omegaprm_k8",
                    "problems_labelled": 9,
                    "not_significantly_worse": {
                        "baseline": None,
                        "cost_ratio": None,
                        "reason": "worse than every MC run",
                    },
                },
            ],
        }
    ]
    table = bench.ratio_table(buckets)
    assert [(r["candidate"], r["baseline"], r["ratio"]) for r in table] == [
        ("omegaprm_k4", "mc_k16", ratio),
        ("omegaprm_k8", None, None),
    ]
    assert table[0]["predicted"]["decided"] == 1.8 and table[0]["mean_m"] == 5.5
    for rows, name in ((table, "ratio.png"), ([], "empty.png")):
        path = bench.plot_ratios(rows, bench.BUCKETS, tmp_path / name)
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert b"matplotlib" not in data  # no Software chunk: the bytes change only with the plot


def test_readable_tables_hold_every_section() -> None:
    assert not math.isnan(bench.predicted_saving(5)["decided"])
    figures = {
        "setting": {
            "problems": {"count": 2, "seed": 16, "by_bucket": {"4-7": 2}},
            "policy": {"model": "m", "weights": {"model.safetensors": "ab" * 32}, "recipe_sha256": "cd" * 32},
            "seeds": {"run": 0},
            "mc": {"k": [4], "solutions": 4},
            "omegaprm": {"k": [4], "search_limit": 100, "rollout_budget": "auto"},
        },
        "buckets": [],
        "ratio_table": [],
        "runs": [{"method": "mc_k4", "samples": 3, "generated_tokens": 9, "search_stage_tokens_per_s": 1.0}],
        "plot": "x.png",
    }
    text = bench.readable(figures)
    assert "recipe_sha256 cdcdcdcdcdcd" in text and "mc_k4 | 3 | 9 | 1.0 | skipped | skipped" in text
