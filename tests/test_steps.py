"""Tests for annotators/steps.py: every splitter, final-answer attachment, the step cap and losslessness."""

from __future__ import annotations

import random
import re

import pytest

from annotators.steps import DEFAULT_MAX_STEPS, MAX_TEXT_CHARS, SPLITTERS, prefix, split_steps

TINY = " Step 1: 9*9=81 Step 2: 81+24=105 Answer: 105"


def without_blank_lines(piece: str) -> str:
    return "\n".join(line for line in piece.split("\n") if line.strip())


def assert_lossless(text: str, steps: list[str], ends: list[int]) -> None:
    """The documented invariants: verbatim slices (`lines`: less their blank lines), increasing ends, prefixes
    without trailing whitespace."""
    assert len(steps) == len(ends)
    previous_end = 0
    for step, end in zip(steps, ends, strict=True):
        assert step and step == step.strip()
        since_previous = text[previous_end:end]
        assert since_previous.endswith(step) or without_blank_lines(since_previous.strip()) == step
        assert end > previous_end
        assert not text[:end][-1].isspace()
        previous_end = end


def non_space(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_tiny_model_format() -> None:
    steps, ends = split_steps(TINY)
    assert steps == ["Step 1: 9*9=81", "Step 2: 81+24=105 Answer: 105"]
    assert TINY[: ends[0]] == " Step 1: 9*9=81"
    assert TINY[: ends[1]] == TINY
    # The continuation of prefix 0 starts with the separator, as in the original sample.
    assert TINY[ends[0] :] == " Step 2: 81+24=105 Answer: 105"


def test_double_newline() -> None:
    text = "Compute 9*9 = 81.\n\nAdd 24: 81 + 24 = 105.\n  \n\n\nCheck: 105 - 24 = 81."
    steps, ends = split_steps(text, "double_newline")
    assert steps == ["Compute 9*9 = 81.", "Add 24: 81 + 24 = 105.", "Check: 105 - 24 = 81."]
    assert prefix(text, ends, 1) == "Compute 9*9 = 81.\n\nAdd 24: 81 + 24 = 105."


def test_double_newline_keeps_single_newlines_inside_a_step() -> None:
    steps, _ = split_steps("a\nb\n\nc", "double_newline")
    assert steps == ["a\nb", "c"]


def test_step_markers_with_preamble_and_markdown() -> None:
    text = "Let's solve it.\n## Step 1: add\n2+2=4\n**Step 2:** multiply\n4*3=12\nStep 10. done"
    steps, ends = split_steps(text, "step_markers")
    assert steps == ["Let's solve it.", "## Step 1: add\n2+2=4", "**Step 2:** multiply\n4*3=12", "Step 10. done"]
    assert_lossless(text, steps, ends)


def test_step_markers_need_a_number_and_a_colon() -> None:
    steps, _ = split_steps("One step: think. Another Step: go. Step 1: real", "step_markers")
    assert steps == ["One step: think. Another Step: go.", "Step 1: real"]


def test_lines_with_crlf() -> None:
    text = "x = 2\r\ny = x + 1\r\n\r\nz = 3"
    steps, ends = split_steps(text, "lines")
    assert steps == ["x = 2", "y = x + 1", "z = 3"]
    assert_lossless(text, steps, ends)


# Real SmolLM2-135M-Instruct samples on GSM8K (configs/smollm2_gsm8k.yaml), one step per line.
SMOL_NUMBERED = (
    "Solve it step by step and max two lines:\n\n1. 20 - 6 = 40\n2. 40 + 2 = 60\n3. 60 + 2 = 62\n"
    "4. 62 + 2 = 64\n\nThe answer is N."
)
SMOL_BARE_MARKER = (
    "1. \nDennis is a dog. \nHe has three feet. \n\nDennis is a dog. \nHe has three feet. \n"
    "So 3 feet is a dog.\n\nThe answer is 3."
)
SMOL_HEADINGS = (
    "Please round this to 3 times.\n\nSolution: \nExplanation: \n"
    "First, you calculate how many feed you need to give each day"
)
SMOL_IN_ONE_LINE = (
    "In one line: \nJanet\u2019s ducks lay 16 eggs per day * 3 meals per day = 128 pounds of eggs per day\n"
    "Same step: \nJanet\u2019s ducks lay 16 eggs per day = 0.338 pounds of eggs per day\n\nThe answer is 0.338."
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The echoed instruction is a heading; the answer after a blank line joins the last step, without the blank.
        (
            SMOL_NUMBERED,
            [
                "Solve it step by step and max two lines:\n1. 20 - 6 = 40",
                "2. 40 + 2 = 60",
                "3. 60 + 2 = 62",
                "4. 62 + 2 = 64\nThe answer is N.",
            ],
        ),
        (
            SMOL_BARE_MARKER,
            [
                "1. \nDennis is a dog.",
                "He has three feet.",
                "Dennis is a dog.",
                "He has three feet.",
                "So 3 feet is a dog.\nThe answer is 3.",
            ],
        ),
        (
            SMOL_HEADINGS,
            [
                "Please round this to 3 times.",
                "Solution: \nExplanation: \nFirst, you calculate how many feed you need to give each day",
            ],
        ),
        (
            SMOL_IN_ONE_LINE,
            [
                "In one line: \nJanet\u2019s ducks lay 16 eggs per day * 3 meals per day = 128 pounds of eggs per day",
                "Same step: \nJanet\u2019s ducks lay 16 eggs per day = 0.338 pounds of eggs per day\nThe answer is 0.338.",
            ],
        ),
    ],
)
def test_lines_merge_contentless_lines_on_smollm2_samples(text: str, expected: list[str]) -> None:
    steps, ends = split_steps(text, "lines")
    assert steps == expected
    assert_lossless(text, steps, ends)
    assert ends[-1] == len(text)
    # Each prefix is exact: it ends where the step's last line ends in the original text.
    for index, step in enumerate(steps):
        assert prefix(text, ends, index).endswith(step.rsplit("\n", 1)[-1])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x=1\n-\ny=2\n*\nz=3", ["x=1", "-\ny=2", "*\nz=3"]),
        ("x=1\nAnswer:\n12", ["x=1\nAnswer:\n12"]),  # the heading joins 12, then attaches as the answer
        ("**Solution:**\nx=1", ["**Solution:**\nx=1"]),
        # A contentless last line joins the step before it; with no step before, it stays a step.
        ("x=1\ny=2\n3.", ["x=1", "y=2\n3."]),
        ("1.\n-", ["1.\n-"]),
        # Lines with content stay steps: digits, a long line, text after the marker.
        ("Daily Feed 1:\nx", ["Daily Feed 1:", "x"]),
        (
            "Wendi feeds the chickens every day three times:\nx",
            ["Wendi feeds the chickens every day three times:", "x"],
        ),
        ("1. add\n2+2=4", ["1. add", "2+2=4"]),
    ],
)
def test_lines_contentless_rules(text: str, expected: list[str]) -> None:
    steps, ends = split_steps(text, "lines")
    assert steps == expected
    assert_lossless(text, steps, ends)


def test_lines_drop_blank_lines_but_keep_offsets() -> None:
    text = "2+2=4\n4*3=12\n\n \n\nThe answer is 12."
    steps, ends = split_steps(text, "lines")
    assert steps == ["2+2=4", "4*3=12\nThe answer is 12."]
    assert ends == [5, len(text)]
    # The other splitters keep their steps verbatim.
    assert split_steps("2+2=4\n\n4*3=12\n\nThe answer is 12.", "double_newline")[0][-1] == "4*3=12\n\nThe answer is 12."


def test_lines_rules_do_not_touch_step_markers() -> None:
    text = "Solution:\nStep 1: 9*9=81\n\nStep 2: 81+24=105\n\nAnswer: 105"
    steps, _ = split_steps(text, "step_markers")
    assert steps == ["Solution:", "Step 1: 9*9=81", "Step 2: 81+24=105\n\nAnswer: 105"]


def test_regex_separator() -> None:
    text = "a=1; b=2 ;c=3;"
    steps, ends = split_steps(text, "regex", pattern=r"\s*;\s*")
    assert steps == ["a=1", "b=2", "c=3"]
    assert ends == [3, 8, 13]


def test_regex_zero_width_separator_splits_before_the_match() -> None:
    steps, _ = split_steps("First do A. Then do B. Then do C.", "regex", pattern=r"(?=Then)")
    assert steps == ["First do A.", "Then do B.", "Then do C."]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"splitter": "regex", "pattern": "(unclosed"}, r"invalid step separator pattern '\(unclosed'"),
        ({"splitter": "regex"}, r"splitter='regex' needs a separator pattern"),
        ({"splitter": "lines", "pattern": r"\n"}, r"pattern is only used with splitter='regex'"),
        ({"splitter": "sentences"}, r"unknown splitter 'sentences'"),
        ({"max_steps": 0}, r"max_steps must be at least 1"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_steps("a\nb", **kwargs)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TINY, ["Step 1: 9*9=81", "Step 2: 81+24=105 Answer: 105"]),
        ("a\nb\n\nc\nd", ["a\nb", "c\nd"]),
        ("a\nb\nc", ["a", "b", "c"]),
        # Blank lines only at the ends do not switch to paragraph mode.
        ("\n\na\nb\n\n", ["a", "b"]),
    ],
)
def test_auto_picks_markers_then_paragraphs_then_lines(text: str, expected: list[str]) -> None:
    assert split_steps(text)[0] == expected


@pytest.mark.parametrize(
    ("text", "splitter", "expected"),
    [
        ("2+2=4\n\n4*3=12\n\nThe answer is 12.", "double_newline", ["2+2=4", "4*3=12\n\nThe answer is 12."]),
        ("2+2=4\n4*3=12\nAnswer: 12", "lines", ["2+2=4", "4*3=12\nAnswer: 12"]),
        ("2+2=4\n4*3=12\n#### 12", "lines", ["2+2=4", "4*3=12\n#### 12"]),
        ("2+2=4\n\n4*3=12\n\n$\\boxed{12}$", "double_newline", ["2+2=4", "4*3=12\n\n$\\boxed{12}$"]),
        ("2+2=4\n\nSo the final answer is: 12", "double_newline", ["2+2=4\n\nSo the final answer is: 12"]),
        # Several trailing answer pieces all attach to the last real step.
        ("2+2=4\n4*3=12\n\\boxed{12}\nThe answer is 12", "lines", ["2+2=4", "4*3=12\n\\boxed{12}\nThe answer is 12"]),
        # An answer with nothing before it stays a step.
        ("The answer is 12.", "lines", ["The answer is 12."]),
    ],
)
def test_final_answer_attaches_to_last_step(text: str, splitter: str, expected: list[str]) -> None:
    steps, ends = split_steps(text, splitter)
    assert steps == expected
    assert ends[-1] == len(text)


def test_long_paragraph_starting_with_answer_is_a_step() -> None:
    long_step = "The answer is not obvious, so " + "we expand the product term by term " * 10
    steps, _ = split_steps(f"Setup.\n\n{long_step}", "double_newline")
    assert len(steps) == 2


def test_boxed_inside_a_sentence_is_not_a_bare_answer_line() -> None:
    steps, _ = split_steps("a\nWe get \\boxed{3} here, then continue", "lines")
    assert steps == ["a", "We get \\boxed{3} here, then continue"]


def test_max_steps_merges_the_rest_into_the_last_step() -> None:
    text = "\n".join(f"line {i}" for i in range(100)) + "\n"
    steps, ends = split_steps(text, "lines")
    assert len(steps) == DEFAULT_MAX_STEPS == 64
    assert steps[-1].startswith("line 63\nline 64") and steps[-1].endswith("line 99")
    assert ends[-1] == len(text) - 1
    assert_lossless(text, steps, ends)
    one_steps, one_ends = split_steps(text, "lines", max_steps=1)
    assert one_steps == [text.strip()] and one_ends == [len(text) - 1]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\n", " \t\r\n "])
@pytest.mark.parametrize("splitter", ["auto", "double_newline", "step_markers", "lines"])
def test_empty_text_has_no_steps(text: str, splitter: str) -> None:
    assert split_steps(text, splitter) == ([], [])


def test_unicode_offsets_are_code_points() -> None:
    text = "Schritt eins: ½ × 2 = 1 ✓\n\n答案是 1 🙂\n\nΣ = 2"
    steps, ends = split_steps(text)
    assert steps == ["Schritt eins: ½ × 2 = 1 ✓", "答案是 1 🙂", "Σ = 2"]
    assert [text[end - 1] for end in ends] == ["✓", "🙂", "2"]


def test_prefix_bounds() -> None:
    steps, ends = split_steps(TINY)
    assert prefix(TINY, ends, 0) == " Step 1: 9*9=81"
    with pytest.raises(IndexError, match="step index -1 out of range for 2 steps"):
        prefix(TINY, ends, -1)
    with pytest.raises(IndexError, match="step index 2 out of range"):
        prefix(TINY, ends, 2)


def random_solution(rng: random.Random) -> str:
    pieces = ["Step 1:", "Step 2:", "\n", "\n\n", "\n \n", " ", "x=1", "a+b", "The answer is 3", "#### 4", "é", ";"]
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))


@pytest.mark.parametrize("splitter", [s for s in SPLITTERS if s != "regex"] + ["regex"])
def test_lossless_property_on_random_texts(splitter: str) -> None:
    rng = random.Random(1234)
    pattern = ";" if splitter == "regex" else None
    for _ in range(500):
        text = random_solution(rng)
        max_steps = rng.choice([1, 3, 64])
        steps, ends = split_steps(text, splitter, pattern=pattern, max_steps=max_steps)
        assert_lossless(text, steps, ends)
        assert len(steps) <= max_steps
        # Nothing but separators is lost between the steps.
        gaps = non_space("".join(steps)).replace(";", "")
        assert gaps == non_space(text).replace(";", "")
        if steps:
            assert ends[-1] == len(re.sub(r"[\s;]+$" if splitter == "regex" else r"\s+$", "", text))


def test_large_hostile_text_is_linear() -> None:
    text = ("\n \n" * 50_000) + "x" + (" " * 100_000) + ("Step 1: " * 10_000)
    steps, ends = split_steps(text)
    assert len(steps) == DEFAULT_MAX_STEPS
    assert_lossless(text, steps, ends)


@pytest.mark.parametrize("splitter", ["auto", "step_markers"])
def test_marker_followed_by_spaces_is_linear(splitter: str) -> None:
    # `[ \t]*(?:\*\*)?[ \t]*` took ~3 s on 20,000 spaces and would take minutes on these ~100 KB
    text = "Step 1" + " " * 99_000 + "x Step 2: y Step 3 **: z"
    steps, ends = split_steps(text, splitter)
    assert steps == [text[: text.index(" Step 2")].strip(), "Step 2: y", "Step 3 **: z"]
    assert_lossless(text, steps, ends)


def test_text_over_the_cap_is_not_split() -> None:
    text = "Step 1: 2+2=4\n\n" * (MAX_TEXT_CHARS // 15 + 1)
    assert len(text) > MAX_TEXT_CHARS
    for splitter in SPLITTERS:
        assert split_steps(text, splitter, pattern="\n" if splitter == "regex" else None) == ([], [])
    assert len(split_steps(text[:MAX_TEXT_CHARS])[0]) == DEFAULT_MAX_STEPS
    with pytest.raises(ValueError, match="needs a separator pattern"):
        split_steps(text, "regex")  # a wrong configuration is still an error, whatever the text
