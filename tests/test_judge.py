"""The ProcessBench judge: prompt text, both parsers on hostile outputs, the vote and the search coroutine."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from annotators.evaluation import load_processbench
from annotators.judge import (
    CRITIQUE_TEMPLATE,
    MAX_CRITIQUE_CHARS,
    JudgeVote,
    build_judge_prompt,
    evidence_from_critiques,
    judge_labels,
    judge_search,
    parse_reference,
    parse_robust,
    tag_steps,
    vote,
    vote_reference,
)
from schemas.records import Request, Sample, SamplingParams, derive_seed

EXPECTED_PROMPT = """The following is a math problem and a solution (split into paragraphs, enclosed with tags and indexed from 0):

[Math Problem]

What is {1+1}?

[Solution]

<paragraph_0>
1+1 = 2
</paragraph_0>

<paragraph_1>
So the answer is \\boxed{2}.
</paragraph_1>

Your task is to review and critique the solution paragraph by paragraph. Once you identify an error in a paragraph, return the index of the paragraph where the earliest error occurs. Otherwise, return the index of -1 (which typically denotes "not found").

Please put your final answer (i.e., the index) in \\boxed{}."""


def test_prompt_is_processbench_text() -> None:
    prompt = build_judge_prompt("What is {1+1}?", ["1+1 = 2", "So the answer is \\boxed{2}."])
    assert prompt == EXPECTED_PROMPT
    assert "{{" not in CRITIQUE_TEMPLATE.format(problem="", tagged_response="")


def test_tag_steps_strips_the_whole_block_only() -> None:
    assert tag_steps(["  a ", "b\n"]) == "<paragraph_0>\n  a \n</paragraph_0>\n\n<paragraph_1>\nb\n\n</paragraph_1>"
    assert tag_steps([]) == ""


HOSTILE = [
    # (text, reference, robust)
    ("no box at all, the answer is 2", None, None),
    ("", None, None),
    ("\\boxed{}", None, None),
    ("\\boxed{2}", 2, 2),
    ("\\boxed{ -1 }", -1, -1),
    ("\\boxed{-3}", -3, -3),
    ("first \\boxed{1} then \\boxed{3}", 3, 3),
    ("\\boxed{\\text{2}}", None, 2),
    ("\\boxed{\\textbf{Paragraph 4}}", None, 4),
    ("\\boxed{paragraph\\_2}", None, 2),
    ("$\\boxed{{5}}$", None, 5),
    ("\\boxed{\\boxed{2}}", None, 2),
    ("\\boxed{2} and a truncated \\boxed{3", 2, 2),
    ("\\boxed{1, 2}", None, None),
    ("\\boxed{two}", None, None),
    ("\\boxed{2.5}", None, None),
    ("\\boxed{1}{2}", 1, 1),
    ("\\boxed{\\frac{1}{2}}", None, None),
    ("\\boxed{" + "9" * 50 + "}", int("9" * 50), int("9" * 50)),
    ("\\boxed{" + "9" * 5000 + "}", None, None),  # int() refuses > 4300 digits; must not raise
    ("}}}{{{\\boxed{0}", 0, 0),
    ("\\boxed{\u22121}", None, -1),
    ("\\boxed{" * 10_000, None, None),
    ("\\boxed{1" + "{" * 10_000, None, None),
]


@pytest.mark.parametrize(("text", "reference", "robust"), HOSTILE)
def test_parsers_on_hostile_outputs(text: str, reference: int | None, robust: int | None) -> None:
    assert parse_reference(text) == reference
    assert parse_robust(text) == robust


def test_parsers_never_crash_on_non_strings() -> None:
    for value in (None, 3, b"\\boxed{1}", ["\\boxed{1}"]):
        assert parse_reference(value) is None  # type: ignore[arg-type]
        assert parse_robust(value) is None  # type: ignore[arg-type]


def test_critique_over_the_cap_is_not_parsed() -> None:
    long = " " * MAX_CRITIQUE_CHARS + "\\boxed{2}"
    assert parse_reference(long) is None and parse_robust(long) is None
    assert parse_reference(long[-MAX_CRITIQUE_CHARS:]) == 2 and parse_robust(long[-MAX_CRITIQUE_CHARS:]) == 2
    evidence = evidence_from_critiques([long, "\\boxed{1}"], n_steps=3, parser="robust")
    assert evidence.parsed == [None, 1] and evidence.n_unparseable == 1


def test_parsers_never_raise_on_random_brace_soup() -> None:
    pieces = ["\\boxed{", "\\text{", "{", "}", "$", "paragraph", "\\_", "-", "1", "9" * 5000, " ", "\u2212", "\\"]
    rng = random.Random(7)
    for _ in range(2_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        for parse in (parse_reference, parse_robust):
            assert parse(text) is None or isinstance(parse(text), int)


def test_vote_majority_and_ties() -> None:
    assert vote([]) is None
    assert vote([None, None]) is None
    assert vote([2, None, 2, 1]) == 2
    assert vote([1, 2, 2, 1]) == 1  # tie: first seen wins, as Counter.most_common does
    assert vote([2, 1, 1, 2]) == 2
    assert vote([None, -1, 3, 3, -1]) == -1


def test_vote_matches_counter_most_common() -> None:
    rng = random.Random(0)
    for _ in range(500):
        parsed = [rng.choice([None, -1, 0, 1, 2]) for _ in range(rng.randint(0, 8))]
        present = [p for p in parsed if p is not None]
        expected = Counter(present).most_common(1)[0][0] if present else None
        assert vote(parsed) == expected


def test_vote_reference_votes_on_strings() -> None:
    critiques = ["\\boxed{\\text{2}}", "\\boxed{\\text{2}}", "\\boxed{2}"]
    assert vote_reference(critiques) is None  # the winning string "\\text{2" is no int
    assert vote_reference(["\\boxed{02}", "\\boxed{2}", "\\boxed{2}"]) == 2
    assert vote_reference(["no box"]) is None


def test_evidence_counts_out_of_range_as_unparseable() -> None:
    critiques = ["\\boxed{5}", "\\boxed{-2}", "\\boxed{1}", "garbage", "\\boxed{-1}", "\\boxed{1}"]
    evidence = evidence_from_critiques(critiques, n_steps=3)
    assert evidence.parsed == [None, None, 1, None, -1, 1]
    assert evidence.n_unparseable == 3
    assert evidence.first_error == 1
    assert evidence.parser == "reference"
    with pytest.raises(ValueError, match="unknown judge parser"):
        evidence_from_critiques(critiques, 3, parser="lenient")


def test_evidence_parser_choice_changes_the_parse() -> None:
    critiques = ["\\boxed{\\text{0}}"] * 2 + ["\\boxed{2}"]
    assert evidence_from_critiques(critiques, 3, "reference").first_error == 2
    assert evidence_from_critiques(critiques, 3, "robust").first_error == 0


def test_judge_labels() -> None:
    assert judge_labels(1, 4) == [True, False, None, None]
    assert judge_labels(-1, 2) == [True, True]
    assert judge_labels(None, 2) == [None, None]


def _samples(texts: list[str]) -> list[Sample]:
    return [Sample(text=t, finish_reason="stop", n_tokens=len(t)) for t in texts]


def test_judge_search_coroutine() -> None:
    sampling = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=512, seed=0)
    steps = ["a", "b", "c"]
    search = judge_search("p1", "Q?", steps, 4, sampling, 7, render=lambda message: f"<user>{message}</user>")
    requests = next(search)
    assert len(requests) == 1
    request = requests[0]
    assert isinstance(request, Request)
    assert request.n == 4
    assert request.prompt == f"<user>{build_judge_prompt('Q?', steps)}</user>"
    assert request.key.startswith("p1/judge/")
    assert request.sampling.seed == derive_seed(7, "p1", request.key)
    assert request.sampling.temperature == 1.0 and request.sampling.max_tokens == 512
    with pytest.raises(StopIteration) as stop:
        search.send([_samples(["\\boxed{1}", "\\boxed{9}", "nothing", "\\boxed{1}"])])
    evidence = stop.value.value
    assert isinstance(evidence, JudgeVote)
    assert evidence.parsed == [1, None, None, 1]
    assert evidence.first_error == 1
    assert evidence.n_unparseable == 2
    assert evidence.critiques[2] == "nothing"


def test_judge_search_keys_differ_per_solution_and_accept_a_key() -> None:
    sampling = SamplingParams()
    first = next(judge_search("p1", "Q", ["a"], 1, sampling, 0, render=str))[0]
    second = next(judge_search("p1", "Q", ["b"], 1, sampling, 0, render=str))[0]
    named = next(judge_search("p1", "Q", ["a"], 1, sampling, 0, render=str, key="p1/s3/judge"))[0]
    assert first.key != second.key and first.sampling.seed != second.sampling.seed
    assert named.key == "p1/s3/judge"


def test_judge_search_survives_an_empty_answer() -> None:
    search = judge_search("p1", "Q", ["a"], 2, SamplingParams(), 0, render=str, parser="robust")
    next(search)
    with pytest.raises(StopIteration) as stop:
        search.send([])
    assert stop.value.value.first_error is None
    assert stop.value.value.parser == "robust"


def test_judge_search_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="m must be"):
        next(judge_search("p1", "Q", ["a"], 0, SamplingParams(), 0, render=str))
    with pytest.raises(ValueError, match="unknown judge parser"):
        next(judge_search("p1", "Q", ["a"], 1, SamplingParams(), 0, render=str, parser="x"))


PROCESSBENCH_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "processbench" / "gsm8k.json"


@pytest.mark.skipif(not PROCESSBENCH_GSM8K.exists(), reason="shared ProcessBench data not present")
def test_prompts_for_every_processbench_row() -> None:
    for row in load_processbench(PROCESSBENCH_GSM8K):
        prompt = build_judge_prompt(row["problem"], row["steps"])
        assert row["problem"] in prompt
        last = len(row["steps"]) - 1
        assert f"<paragraph_{last}>" in prompt and f"<paragraph_{last + 1}>" not in prompt
        assert prompt.endswith("in \\boxed{}.")
