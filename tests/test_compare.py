"""Matched-quality comparison of two labellers (annotators/compare.py) on hand-made arithmetic rows."""

from annotators.compare import (
    Labeller,
    matched_quality,
    mc_assumption,
    paired_difference,
    tally,
    unique_labelled_steps,
)

Q = "Q: 25+8*2+45=?"
GOLD = ["Step 1: 8*2=16", "Step 2: 25+16=41", "Step 3: 41+45=86 Answer: 86"]
WRONG = ["Step 1: 8*2=16", "Step 2: 25+16=40", "Step 3: 40+45=85 Answer: 85"]  # exact first error: step index 1


def row(problem: str, steps: list[str], first_error: int, question: str = Q) -> dict:
    return {"problem_id": problem, "prompt": question, "completions": steps, "first_error_index": first_error}


def test_tally_splits_agreement_by_claim() -> None:
    counts = tally(
        [row("p", WRONG, 1), row("p", WRONG, 0), row("p", GOLD, -1), row("p", WRONG, -1), row("x", GOLD, -1, "Q: hi")]
    )
    assert counts["p"]["error_claims"] == [1, 2]  # right on the first, too early on the second
    assert counts["p"]["no_error_claims"] == [1, 2]  # the gold solution is right, the wrong one is not
    assert counts["p"]["all"] == [2, 4]
    assert "x" not in counts  # outside the arithmetic domain


def test_shared_prefixes_count_once() -> None:
    assert unique_labelled_steps([row("p", WRONG, 1), row("p", GOLD, -1)]) == 5  # step 1 is shared
    assert unique_labelled_steps([row("p", GOLD, -1), row("q", GOLD, -1)]) == 6  # other problem, other steps


def test_paired_difference_interval() -> None:
    same = tally([row("a", WRONG, 1), row("b", WRONG, 0)])
    assert paired_difference(same, same, ["a", "b"], "all") == {"difference": 0.0, "low": 0.0, "high": 0.0}
    better = tally([row(p, WRONG, 1) for p in "abcdefgh"])
    worse = tally([row(p, WRONG, 0) for p in "abcdefgh"])
    diff = paired_difference(better, worse, list("abcdefgh"), "all")
    assert diff == {"difference": 1.0, "low": 1.0, "high": 1.0}
    mixed = tally([row(p, WRONG, 1 if p in "abcd" else 0) for p in "abcdefgh"])
    diff = paired_difference(mixed, worse, list("abcdefgh"), "all", draws=500)
    assert diff["difference"] == 0.5 and 0.0 < diff["low"] < 0.5 < diff["high"] <= 1.0


def test_matched_quality_finds_the_dearest_baseline_the_candidate_equals() -> None:
    # The candidate labels problems a..h: every first error right, 2 distinct steps each, 16 samples in all, plus
    # 24 spent on problem z where it labelled nothing (they still count): 40 / 16 = 2.5 per step.
    problems = "abcdefgh"
    samples = {p: 2 for p in problems} | {"z": 24}
    candidate = Labeller("omega", [row(p, WRONG[:2], 1) for p in problems], samples)
    mc_k4 = Labeller("mc_k4", [row(p, WRONG, 0) for p in problems + "z"], {p: 3 for p in problems + "z"})
    mc_k8 = Labeller("mc_k8", [row(p, WRONG, 1 if p in "abcd" else 0) for p in problems], {p: 6 for p in problems})
    mc_k32 = Labeller("mc_k32", [row(p, WRONG, 1) for p in problems + "z"], {p: 30 for p in problems + "z"})
    out = matched_quality(candidate, [mc_k4, mc_k8, mc_k32])
    assert out["samples_per_unique_labelled_step"] == 2.5 and out["problems"] == 8
    by_name = {b["baseline"]: b for b in out["baselines"]}
    # Baselines are costed on a..h only (3 steps per problem): problem z is left out.
    assert [by_name[n]["samples_per_unique_labelled_step"] for n in ("mc_k4", "mc_k8", "mc_k32")] == [1.0, 2.0, 10.0]
    assert by_name["mc_k8"]["agreement"]["error_claims"] == 0.5
    assert by_name["mc_k4"]["candidate_minus_baseline"]["error_claims"] == {"difference": 1.0, "low": 1.0, "high": 1.0}
    assert out["matched"]["compared_on"] == ["error_claims"]  # the candidate claims no error-free solution
    # Equal to mc_k32 (which pays 4x more per step), better than the others.
    assert out["matched"]["point"] == {"baseline": "mc_k32", "ratio": 4.0}
    # Significantly better than mc_k8 (right on 8 of 8 against 4 of 8), not than mc_k32 (equal).
    assert out["matched"]["significantly_better"] == {"baseline": "mc_k8", "ratio": 0.8}


def test_matched_quality_judges_every_kind_of_claim() -> None:
    # Right on its error claims, wrong on its no-error claims: worse than a baseline right on both.
    candidate = Labeller("omega", [row("a", WRONG[:2], 1), row("a", WRONG, -1)], {"a": 2})
    baseline = Labeller("mc", [row("a", WRONG, 1), row("a", GOLD, -1)], {"a": 5})
    out = matched_quality(candidate, [baseline])
    assert out["matched"]["compared_on"] == ["error_claims", "no_error_claims"]
    assert out["agreement"]["error_claims"] == 1.0 and out["agreement"]["no_error_claims"] == 0.0
    assert out["matched"]["point"] == {"baseline": None, "ratio": None}
    assert out["matched"]["significantly_better"] == {"baseline": None, "ratio": None}


def test_mc_assumption_counts_each_measured_prefix_once() -> None:
    def measured(problem: str, steps: list[str], mc: list, n: list) -> dict:
        return {**row(problem, steps, -1), "mc_values": mc, "n_rollouts": n}

    rows = [
        # right step 1 with MC 0 (a false zero); wrong step 2 with MC 0.25 (reaches the answer anyway);
        # the last step is graded by its answer (1 rollout): no estimate
        measured("p", WRONG, [0.0, 0.25, 0.0], [8, 8, 1]),
        measured("p", GOLD, [0.0, 0.5, None], [8, 8, None]),  # step 1 again: counted once
    ]
    assert mc_assumption(rows) == {
        "measured_prefixes": 3,
        "wrong_prefixes": 1,
        "wrong_prefixes_with_mc_above_0": 1.0,
        "right_prefixes": 2,
        "right_prefixes_with_mc_0": 0.5,
    }
