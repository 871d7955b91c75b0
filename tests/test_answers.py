"""Tests for annotators/answers.py: extraction, reference parsing, grading (fast paths and Math-Verify),
grading from worker threads, hostile inputs and truncation policies."""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import pytest

from annotators import answers
from annotators.answers import (
    TruncatedGenerationError,
    Verdict,
    extract_answer,
    gold_undecidable,
    grade,
    judge_text,
    parse_reference_answer,
)

# ---------------------------------------------------------------------------------------------------------------
# extract_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" Step 1: 9*9=81 Step 2: 81+24=105 Answer: 105", ("105", "answer_colon")),
        ("so $\\boxed{\\frac{1}{2}}$.", ("\\frac{1}{2}", "boxed")),
        ("\\boxed{1} then \\fbox{2}", ("2", "boxed")),
        ("nested \\boxed{\\frac{\\sqrt{2}}{\\{2\\}}} end", ("\\frac{\\sqrt{2}}{\\{2\\}}", "boxed")),
        ("escaped \\boxed{\\{1, 2\\}}", ("\\{1, 2\\}", "boxed")),
        # An unbalanced last box is skipped for the previous balanced one.
        ("\\boxed{7} and later \\boxed{8", ("7", "boxed")),
        ("empty \\boxed{} but \\boxed{ 3 }", ("3", "boxed")),
        # A box wins over every other marker, even an earlier one.
        ("\\boxed{5}\n#### 6", ("5", "boxed")),
        ("Natalia sold 48/2 = 24 clips.\n#### 72", ("72", "hashes")),
        ("The answer is 105. I hope it is correct.", ("105", "answer_is")),
        ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", ("\\frac{3}{4}", "answer_is")),
        ("Step 2: 6*3=18 The answer is: 18", ("18", "answer_is")),
        ("the answer is 3.5.", ("3.5", "answer_is")),
        ("Answer: 4\nwait, no.\nAnswer: 5", ("5", "answer_colon")),
        ("**Answer:** $12$", ("12", "answer_colon")),
        ("Answer:\n42", ("42", "answer_colon")),
        ("  -1,250.5 ", ("-1,250.5", "bare_number")),
        ("\\$18.00", ("\\$18.00", "bare_number")),
        ("I am not sure.", (None, "none")),
        ("", (None, "none")),
        ("Answer:", (None, "none")),
    ],
)
def test_extract_answer(text: str, expected: tuple[str | None, str]) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Real SmolLM2-135M-Instruct endings on GSM8K (configs/smollm2_gsm8k.yaml): the value after the last `=`.
        (
            "Now, he has to pay the 144 coffee cups, and if he wants to add alcohol, he can buy 144 - 12 = 122 ounces"
            " of alcohol.\n\nSo, the answer is 128 + 122 = 242, which is the number of cups of coffee he needs to buy.",
            ("242", "answer_is"),
        ),
        ("The answer is 480 * (100 / 16) * 100 = 480 * 100 = 4800.", ("4800", "answer_is")),
        ("So the answer is 12 + 48 + 2 = 12*2 + 24 = 36 + 8 + 2 = 52.", ("52", "answer_is")),
        ("The answer is 36 / 3 = 12, which makes sense, right? ", ("12", "answer_is")),
        ("The answer is 1600 + 1200 = 2800 dollars.", ("2800 dollars", "answer_is")),
        ("The answer is N + 72 = 16 + 36 + 72 = 169.", ("169", "answer_is")),
        ("So the answer is, = 10 * 11 = 110 days.", ("110 days", "answer_is")),
        ("Answer: 81+24=105", ("105", "answer_colon")),
        # Only the first clause counts; thousands commas do not end it; a clause without `=` is kept as it was.
        ("The answer is 1,000 + 2 = 1,002, as shown.", ("1,002", "answer_is")),
        ("The answer is 3, which is 1 + 2 = 3 in total.", ("3, which is 1 + 2 = 3 in total", "answer_is")),
        # Comparisons are not equation chains.
        ("The answer is x <= 5.", ("x <= 5", "answer_is")),
        ("The answer is x != 5.", ("x != 5", "answer_is")),
        # A math span is read as it is.
        ("The answer is $x = 5$.", ("x = 5", "answer_is")),
        # A chain with nothing after its last `=` keeps the text.
        ("The answer is 10 + 3 =", ("10 + 3 =", "answer_is")),
    ],
)
def test_extract_answer_after_an_equation_chain(text: str, expected: tuple[str | None, str]) -> None:
    assert extract_answer(text) == expected


def test_judge_text_smollm2_equation_chain_is_graded_by_its_value() -> None:
    text = "So, the answer is 128 + 122 = 242, which is the number of cups of coffee he needs to buy."
    assert judge_text(text, "stop", "242") == Verdict(True, "exact_match", "242")
    assert judge_text(text, "stop", "64") == Verdict(False, "rational_mismatch", "242")
    assert judge_text("The answer is 1600 + 1200 = 2800 dollars.", "stop", "2800").correct is True


def test_extract_equation_chain_is_linear() -> None:
    for text in (
        "The answer is " + "1 + " * 25_000 + "= 2",
        "The answer is " + "=" * 100_000,
        "answer is " + ", " * 50_000,
    ):
        started = time.perf_counter()
        extract_answer(text)
        assert time.perf_counter() - started < 1


def test_extract_unbalanced_box_falls_back_to_other_markers() -> None:
    assert extract_answer("Answer: 9\n\\boxed{" + "{" * 10_000) == ("9", "answer_colon")


def test_extract_deeply_nested_braces_without_recursion() -> None:
    depth = 5_000
    text = "\\boxed{" + "{" * depth + "7" + "}" * depth + "}"
    answer, method = extract_answer(text)
    assert method == "boxed" and answer == "{" * depth + "7" + "}" * depth


def test_extract_100k_nested_braces_is_fast_and_bounded() -> None:
    text = "Answer: 1\n" + "\\boxed{" + "{" * 100_000 + "}" * 100_000 + "}"
    started = time.perf_counter()
    answer, method = extract_answer(text)
    # Only the last MAX_EXTRACT_CHARS are searched: they hold closing braces only.
    assert (answer, method) == (None, "none")
    assert time.perf_counter() - started < 5


def test_extract_only_searches_the_tail() -> None:
    text = "\\boxed{1}" + "x" * answers.MAX_EXTRACT_CHARS + " The answer is 2."
    assert extract_answer(text) == ("2", "answer_is")


def test_extract_many_unbalanced_boxes_is_linear() -> None:
    text = "\\boxed{" * 2_500 + " Answer: 3"
    started = time.perf_counter()
    assert extract_answer(text) == ("3", "answer_colon")
    assert time.perf_counter() - started < 5


# ---------------------------------------------------------------------------------------------------------------
# parse_reference_answer


@pytest.mark.parametrize(
    ("raw", "fmt", "expected"),
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "gsm8k", "72"),
        ("He earns 1,000 + 234 = 1,234 dollars.\n#### 1,234", "gsm8k", "1234"),
        ("#### 1,234,567.5", "auto", "1234567.5"),
        ("So the total is $\\boxed{\\frac{1}{2}}$.", "math", "\\frac{1}{2}"),
        ("First \\boxed{1}, corrected: $\\boxed{\\dfrac{\\sqrt{3}}{2}}$", "auto", "\\dfrac{\\sqrt{3}}{2}"),
        ("  (1, 2)  ", "plain", "(1, 2)"),
        ("  x^2 + 1 ", "auto", "x^2 + 1"),
        ("no marker here", "gsm8k", None),
        ("no box here", "math", None),
        ("   ", "plain", None),
    ],
)
def test_parse_reference_answer(raw: str, fmt: str, expected: str | None) -> None:
    assert parse_reference_answer(raw, fmt) == expected


def test_parse_reference_answer_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown reference answer format 'aime'"):
        parse_reference_answer("#### 1", "aime")


# ---------------------------------------------------------------------------------------------------------------
# grade: fast paths


@pytest.mark.parametrize(
    ("candidate", "gold", "reason"),
    [
        ("18", "18", "exact_match"),
        ("18.0", "18", "rational_equal"),
        ("$18", "18", "rational_equal"),
        ("\\$18", "18", "rational_equal"),
        ("18.00", "18", "rational_equal"),
        ("18 \\text{ dollars}", "18", "rational_equal"),
        ("\\frac{1}{2}", "0.5", "rational_equal"),
        ("\\dfrac{1}{2}", "1/2", "rational_equal"),
        ("-\\frac{3}{4}", "-0.75", "rational_equal"),
        ("\\frac{-3}{4}", "\u22120.75", "rational_equal"),
        ("1,000", "1000", "rational_equal"),
        ("1{,}000", "1000", "rational_equal"),
        ("1\\,000", "1000", "rational_equal"),
        ("+5", "5", "rational_equal"),
        ("1.5e3", "1500", "rational_equal"),
        ("90^\\circ", "90", "rational_equal"),
        # Percent (module docstring): 50% reads as 50 and as 0.5, like Math-Verify.
        ("50%", "50", "rational_equal"),
        ("50\\%", "0.5", "rational_equal"),
        # Plain words after a number carry no value (chat models end "The answer is 18 dollars.").
        ("18 dollars", "18", "rational_equal"),
        ("$18 per day", "18", "rational_equal"),
        ("40, which is the answer we were looking for", "40", "rational_equal"),
        ("1,234 sheep.", "1234", "rational_equal"),
        ("\\text{Monday}", "monday", "normalized_match"),
        ("\\left( 1,2 \\right)", "(1, 2)", "normalized_match"),
    ],
)
def test_grade_equal(candidate: str, gold: str, reason: str) -> None:
    assert grade(candidate, gold) == Verdict(True, reason, candidate)


@pytest.mark.parametrize(
    ("candidate", "gold"),
    [
        ("17", "18"),
        ("18.01", "18"),
        ("0.333333", "1/3"),
        ("100", "1,000"),
        ("-0.5", "\\frac{1}{2}"),
        ("50%", "5"),
        ("1e-3", "1000"),
    ],
)
def test_grade_rational_mismatch(candidate: str, gold: str) -> None:
    assert grade(candidate, gold) == Verdict(False, "rational_mismatch", candidate)


@pytest.mark.parametrize(
    ("candidate", "verdict"),
    [
        (None, Verdict(False, "missing_answer", None)),
        ("   ", Verdict(False, "missing_answer", None)),
        ("1" * 100_000, Verdict(False, "answer_too_long", "1" * answers.MAX_ANSWER_CHARS)),
    ],
)
def test_grade_missing_or_too_long(candidate: str | None, verdict: Verdict) -> None:
    assert grade(candidate, "1") == verdict


def test_grade_missing_or_huge_gold_is_undecided() -> None:
    assert grade("5", "  ") == Verdict(None, "missing_gold", "5")
    assert grade("5", "9" * 20_000) == Verdict(None, "gold_too_long", "5")


@pytest.fixture
def math_verify_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record what would be handed to Math-Verify instead of running it."""
    calls: list[tuple[str, str]] = []

    def record(gold: str, candidate: str, *_: object) -> tuple[bool | None, str]:
        calls.append((gold, candidate))
        return None, "recorded"

    monkeypatch.setattr(answers, "_math_verify", record)
    return calls


def test_deep_answers_never_reach_math_verify(math_verify_calls: list[tuple[str, str]]) -> None:
    # 450 nested braces ran Math-Verify into its 5 s timeout; now the depth is measured first
    deep = "{" * 450 + "1" + "}" * 450
    assert grade(deep[:999], "2") == Verdict(False, "answer_too_deep", deep[:999])
    assert grade("2", "\\frac{" * 9 + "1" + "}{2}" * 9) == Verdict(None, "gold_too_deep", "2")
    assert grade("x^{" * 5000 + "1", "2").reason == "answer_too_long"
    assert math_verify_calls == []
    at_cap = "(" * answers.MAX_NESTING + "x" + ")" * answers.MAX_NESTING
    assert grade(at_cap, "2").reason == "recorded" and math_verify_calls == [("2", at_cap)]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("x" * 5_000_000 + "\\boxed{" + "\\sqrt{2}" * 200 + "}", "answer_too_long"),  # a 1,800-character box
        ("The answer is " + "\\sqrt{2}+" * 150 + "1", "answer_too_long"),
        ("\\boxed{" * 50_000 + "\\sqrt{2}" + "}" * 50_000, "missing_answer"),  # only the tail is searched
        ("#### " + "\\left(" * 40 + "\\pi" + "\\right)" * 40, "answer_too_deep"),
        ("Answer: " + "1e999999 " * 1_000, "answer_too_long"),
        ("The answer is " + "\\sqrt{2}+" * 50 + "1", "recorded"),  # within every bound: Math-Verify decides
    ],
)
def test_math_verify_only_gets_bounded_text(math_verify_calls: list[tuple[str, str]], text: str, reason: str) -> None:
    assert judge_text(text, "stop", "\\frac{\\sqrt{2}}{2}").reason == reason
    for _gold, candidate in math_verify_calls:
        assert len(candidate) <= answers.MAX_ANSWER_CHARS and answers._nesting(candidate) <= answers.MAX_NESTING
    assert len(math_verify_calls) == (reason == "recorded")


def test_reference_answer_from_hostile_references_is_bounded() -> None:
    # only the tail is searched: here it holds no "####" any more
    assert parse_reference_answer("#### " + "1,000" * 20_000, "gsm8k") is None
    assert parse_reference_answer("#### " + "1,000" * 3_000, "gsm8k") == "1,000" * 2_999 + "1000"
    assert parse_reference_answer("\\boxed{" * 100_000, "math") is None
    assert (
        parse_reference_answer("\\boxed{" + "{" * 9_000 + "7" + "}" * 9_000 + "}", "math")
        == "{" * 9_000 + "7" + "}" * 9_000
    )
    assert parse_reference_answer("x" * 100_000 + "\n#### 12", "auto") == "12"


def test_rational_parser_bounds() -> None:
    assert answers._rational_values("9" * answers.MAX_DIGITS) == frozenset({Fraction(int("9" * answers.MAX_DIGITS))})
    assert answers._rational_values("9" * (answers.MAX_DIGITS + 1)) is None
    assert answers._rational_values("1e999999") is None
    assert answers._rational_values("1e-999999999999999") is None
    assert answers._rational_values("1/0") is None
    assert answers._rational_values("1 000") is None
    assert answers._rational_values("1,00") is None


def test_grade_hostile_numbers_return_quickly() -> None:
    started = time.perf_counter()
    big = "9" * 999
    assert grade(big, big + "") == Verdict(True, "exact_match", big)
    assert grade(big, "9" * 998 + "8").reason == "rational_mismatch"
    # Not parsed as 10**999999 (our parser refuses it; Math-Verify reads 1e999999 as 1*e*999999).
    verdict = grade("1e999999", "5")
    assert verdict.correct is False and verdict.reason == "math_verify_unequal"
    assert time.perf_counter() - started < 10


# ---------------------------------------------------------------------------------------------------------------
# grade: Math-Verify path (main thread here: pytest runs tests in the main thread)


@pytest.mark.parametrize(
    ("candidate", "gold", "correct", "reason"),
    [
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", True, "math_verify_equal"),
        ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}", True, "math_verify_equal"),
        ("x = 5", "5", True, "math_verify_equal"),
        ("2\\pi", "\\pi \\cdot 2", True, "math_verify_equal"),
        ("\\sqrt{3}", "\\sqrt{2}", False, "math_verify_unequal"),
        ("(1, 2)", "[1, 2]", False, "math_verify_unequal"),
        # Gold first (docs/methods.md §4): an interval answers an inequality gold, not the other way round.
        ("(1,2)", "1<x<2", True, "math_verify_equal"),
        ("1<x<2", "(1,2)", False, "math_verify_unequal"),
        ("???", "5", False, "candidate_unparseable"),
    ],
)
def test_grade_math_verify(candidate: str, gold: str, correct: bool, reason: str) -> None:
    assert threading.current_thread() is threading.main_thread()
    assert grade(candidate, gold) == Verdict(correct, reason, candidate)


def test_grade_math_verify_timeout_in_main_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answers, "MATH_VERIFY_TIMEOUT_S", 1)
    started = time.perf_counter()
    assert grade("2^{2^{40}}", "5") == Verdict(None, "grader_timeout", "2^{2^{40}}")
    assert time.perf_counter() - started < 10


def test_a_gold_that_no_answer_can_be_graded_against_in_time_is_found_once() -> None:
    # (2^64)^(2^64) parses at once, then every comparison with a number runs to Math-Verify's timeout
    assert gold_undecidable("(2^64)^(2^64)") == (
        f"Math-Verify cannot compare it with a number within {answers.GOLD_CHECK_TIMEOUT_S} s"
    )
    for gold in ("\\frac{\\sqrt{3}}{2}", "x^2+1", "(1, 2)", "Monday", "???", "x^{10^{100}}"):
        assert gold_undecidable(gold) is None, gold  # graded as before, unparseable golds included


def test_golds_grade_never_hands_to_math_verify_are_not_tried(math_verify_calls: list[tuple[str, str]]) -> None:
    for gold in ("1005", "-\\frac{1}{2}", "50\\%", "", "9" * 20_000, "\\frac{" * 9 + "1" + "}{2}" * 9):
        assert gold_undecidable(gold) is None
    assert math_verify_calls == []
    assert gold_undecidable("\\sqrt{2}") is None and math_verify_calls == [("\\sqrt{2}", "1")]


# ---------------------------------------------------------------------------------------------------------------
# grade from other threads: Math-Verify runs in the worker process


def grade_in_thread(candidate: str, gold: str) -> Verdict:
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(grade, candidate, gold).result(timeout=answers.WORKER_STARTUP_TIMEOUT_S + 60)


def test_grade_from_a_thread_uses_the_worker() -> None:
    assert grade_in_thread("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}") == Verdict(True, "math_verify_equal", "\\sqrt{2}/2")
    assert grade_in_thread("\\sqrt{3}", "\\sqrt{2}") == Verdict(False, "math_verify_unequal", "\\sqrt{3}")
    # The fast paths still answer in the calling thread.
    assert grade_in_thread("18.0", "18") == Verdict(True, "rational_equal", "18.0")


def test_grade_from_many_threads_at_once() -> None:
    cases = [("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", True), ("\\sqrt{3}", "\\sqrt{2}", False)] * 3
    with ThreadPoolExecutor(max_workers=6) as pool:
        verdicts = list(pool.map(lambda case: grade(case[0], case[1]), cases))
    assert [verdict.correct for verdict in verdicts] == [correct for _, _, correct in cases]


def _exit_code(process: multiprocessing.Process, timeout_s: float) -> int | None:
    """The process's exit code once it is reaped, by this thread or by the pool's manager thread.

    The executor's manager thread also joins its workers; when it reaps one first, this thread's join returns
    with exitcode None (waitpid: no child) until the manager thread has stored the code, so wait for that.
    """
    deadline = time.monotonic() + timeout_s
    process.join(timeout=timeout_s)
    while process.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return process.exitcode


def test_worker_timeout_kills_the_worker_and_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    grade_in_thread("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}")  # a warm worker, so the timeout below hits the task
    stuck_worker = answers._pool
    worker_processes = list(stuck_worker._processes.values())
    monkeypatch.setattr(answers, "WORKER_TASK_TIMEOUT_S", 0.5)
    # Math-Verify's own alarm in the worker (5 s) is later than our overall timeout.
    assert grade_in_thread("2^{2^{40}}", "5") == Verdict(None, "grader_timeout", "2^{2^{40}}")
    assert answers._pool is None
    for process in worker_processes:  # killed, not left to finish its 5 s computation
        assert _exit_code(process, timeout_s=5.0) == -signal.SIGKILL
    monkeypatch.setattr(answers, "WORKER_TASK_TIMEOUT_S", 30.0)
    assert grade_in_thread("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}").correct is True
    assert answers._pool is not None and answers._pool is not stuck_worker


# ---------------------------------------------------------------------------------------------------------------
# judge_text

TINY_GOOD = " Step 1: 9*9=81 Step 2: 81+24=105 Answer: 105"
TINY_BAD = " Step 1: 9*9=81 Step 2: 81+24=108 Answer: 108"


def test_judge_text_tiny_model_samples() -> None:
    assert judge_text(TINY_GOOD, "stop", "105") == Verdict(True, "exact_match", "105")
    assert judge_text(TINY_BAD, "stop", "105") == Verdict(False, "rational_mismatch", "108")
    assert judge_text(" Step 1: 9*9=81 Step 2:", "stop", "105") == Verdict(False, "missing_answer", None)


def test_judge_text_truncation_policies() -> None:
    truncated = " Step 1: 9*9=81 Step 2: 81+24=105 Answer: 105"
    assert judge_text(truncated, "length", "105") == Verdict(False, "truncated", "105")
    assert judge_text(truncated, "length", "105", truncation_policy="wrong") == Verdict(False, "truncated", "105")
    assert judge_text(truncated, "length", "105", truncation_policy="grade") == Verdict(True, "exact_match", "105")
    with pytest.raises(TruncatedGenerationError, match="truncated at max_tokens"):
        judge_text(truncated, "length", "105", truncation_policy="error")
    # The policy only applies to truncated generations.
    assert judge_text(truncated, "stop", "105", truncation_policy="error").correct is True


def test_judge_text_engine_error_is_undecided() -> None:
    assert judge_text(TINY_GOOD, "error", "105") == Verdict(None, "generation_error", "105")


def test_judge_text_unknown_policy() -> None:
    with pytest.raises(ValueError, match="unknown truncation policy 'skip'"):
        judge_text(TINY_GOOD, "stop", "105", truncation_policy="skip")


def test_judge_text_boxed_math_answer() -> None:
    text = "We simplify.\n\nThus $x = \\boxed{\\dfrac{\\sqrt{2}}{2}}$."
    assert judge_text(text, "stop", "\\frac{1}{\\sqrt{2}}") == Verdict(
        True, "math_verify_equal", "\\dfrac{\\sqrt{2}}{2}"
    )


def test_judge_text_unicode_and_empty() -> None:
    assert judge_text("", "stop", "1") == Verdict(False, "missing_answer", None)
    assert judge_text("Réponse : 12 🙂 Answer: 12", "stop", "12").correct is True


def test_bundled_gsm8k_rows_have_gsm8k_gold_answers():
    import json
    from pathlib import Path

    data = Path(__file__).resolve().parent / "data"
    rows = [json.loads(line) for line in (data / "gsm8k_test_first8.jsonl").read_text().splitlines()]
    golds = [parse_reference_answer(row["answer"], "gsm8k") for row in rows]
    assert golds == ["18", "3", "70000", "540", "20", "64", "260", "160"]
    assert all(sorted(row) == ["answer", "question"] for row in rows)
    assert (data / "gsm8k_LICENSE").read_text().startswith("MIT License")


def test_words_that_scale_a_number_or_more_numbers_keep_it_from_the_fast_path():
    for candidate, gold in [("2 million", "2"), ("5 apples and 3 oranges", "5"), ("3 times", "3"), ("2 x 4", "2")]:
        assert grade(candidate, gold).reason != "rational_equal", candidate
    assert grade("19 dollars", "18").reason == "rational_mismatch"
