"""LLM-as-a-judge step verification with the ProcessBench critique prompt (docs/labellers.md §1).

The judge is asked for the index of the earliest wrong paragraph and answers in ``\\boxed{}``. This module holds
the prompt, the parsers, the vote and the search coroutine that asks the judge model for ``m`` critiques; it
never calls a model itself (the driver does) and never evaluates model output.

Two parsers:

- ``reference``: ProcessBench's own ``re.findall(r'\\\\boxed\\{([^}]*)\\}', text)[-1].strip()`` then ``int()``,
  kept so that figures compare with published ProcessBench numbers (docs/labellers.md §1.1). ``[^}]*`` stops at the
  first ``}``, so ``\\boxed{\\text{2}}`` parses to ``None``.
- ``robust``: the last brace-matched box, with ``\\text{}``-style wrappers, ``$`` and a leading "paragraph"
  stripped. Report its figures separately from the reference ones.

Both run in linear time and parse nothing longer than ``MAX_CRITIQUE_CHARS`` (such a critique parses to None, counted
as unparseable); neither raises on any input.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

from annotators.evaluation import labels_from_first_error
from schemas.records import Request, Sample, SamplingParams, derive_seed

__all__ = [
    "CRITIQUE_TEMPLATE",
    "MAX_CRITIQUE_CHARS",
    "PARSERS",
    "JudgeVote",
    "build_judge_prompt",
    "evidence_from_critiques",
    "extract_reference",
    "judge_labels",
    "judge_search",
    "parse_reference",
    "parse_robust",
    "tag_steps",
    "vote",
    "vote_reference",
]

# QwenLM/ProcessBench code/templates/critique_template.txt, as read with `.read().strip()` (docs/labellers.md §1.1);
# `{{}}` is the `.format` escape of the literal `{}`.
CRITIQUE_TEMPLATE = (
    "The following is a math problem and a solution "
    "(split into paragraphs, enclosed with tags and indexed from 0):\n"
    "\n"
    "[Math Problem]\n"
    "\n"
    "{problem}\n"
    "\n"
    "[Solution]\n"
    "\n"
    "{tagged_response}\n"
    "\n"
    "Your task is to review and critique the solution paragraph by paragraph. "
    "Once you identify an error in a paragraph, return the index of the paragraph where the earliest error occurs. "
    'Otherwise, return the index of -1 (which typically denotes "not found").\n'
    "\n"
    "Please put your final answer (i.e., the index) in \\boxed{{}}."
)

# A longer critique is not parsed (None): a judge's max_tokens keeps real ones far below it, and it bounds the work.
MAX_CRITIQUE_CHARS = 1_000_000
_REFERENCE_BOX = re.compile(r"\\boxed\{([^}]*)\}")  # ProcessBench run_eval.py extract_answer (docs/labellers.md §1.1)
_BRACE_TOKEN = re.compile(r"\\boxed\{|\{|\}")
_MAX_INDEX_CHARS = 256  # a box longer than this holds prose, not an index; also bounds the peeling loop
_WRAPPER = re.compile(r"^\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|fbox|boxed)\s*\{(.*)\}$", re.DOTALL)
_PARAGRAPH_PREFIX = re.compile(r"^(?:paragraph|step)(?:\\?_|\s|~|:)*", re.IGNORECASE)
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)


def tag_steps(steps: Sequence[str]) -> str:
    """ProcessBench's ``tagged_response``: each step in ``<paragraph_i>`` tags, blocks joined, then stripped."""
    # run_eval.py prepare_input_boxed (docs/labellers.md §1.1)
    tagged = "".join(f"<paragraph_{index}>\n{step}\n</paragraph_{index}>\n\n" for index, step in enumerate(steps))
    return tagged.strip()


def build_judge_prompt(problem: str, steps: Sequence[str], template: str = CRITIQUE_TEMPLATE) -> str:
    """The judge's single user message; the caller applies the judge model's chat template.

    `template` needs `{problem}` and `{tagged_response}`; keep the ProcessBench default for comparable numbers.
    """
    return template.format(problem=problem, tagged_response=tag_steps(steps))


def _to_int(text: str) -> int | None:
    """Python ``int()`` as ProcessBench uses it, with every failure (including >4300 digits) mapped to None."""
    try:
        return int(text)
    except (ValueError, TypeError):
        return None


def extract_reference(text: str) -> str | None:
    """ProcessBench's ``extract_answer``: the stripped content of the last ``\\boxed{...}`` without a ``}``."""
    if not isinstance(text, str) or len(text) > MAX_CRITIQUE_CHARS:
        return None
    # Nothing after the last "}" can match; cutting it keeps findall's result and makes it linear on text
    # like "\\boxed{" * n, where every failed attempt would rescan to the end.
    matches = _REFERENCE_BOX.findall(text[: text.rfind("}") + 1])
    return matches[-1].strip() if matches else None


def parse_reference(text: str) -> int | None:
    """The reference parser: last ``\\boxed{[^}]*}`` then ``int()``; None when absent or not an integer."""
    extracted = extract_reference(text)
    return None if extracted is None else _to_int(extracted)


def _last_closed_box(text: str) -> str | None:
    """Content of the closed ``\\boxed{...}`` that ends last, braces matched; one linear pass over the braces."""
    stack: list[int | None] = []  # per open brace: content start of a box, or None for a plain brace
    last: tuple[int, int] | None = None
    for token in _BRACE_TOKEN.finditer(text):
        if token.group() == "}":
            if stack:
                start = stack.pop()
                if start is not None:
                    last = (start, token.start())
        else:
            stack.append(token.end() if token.group() != "{" else None)
    return None if last is None else text[last[0] : last[1]]


def _normalise_index(content: str) -> str:
    """Peel ``$``, ``\\text{}``-style wrappers, stray outer braces and a "paragraph" prefix off a box content."""
    previous = None
    while content != previous:
        previous = content
        content = content.strip().strip("$").strip()
        wrapped = _WRAPPER.match(content)
        if wrapped:
            content = wrapped.group(1)
        elif content.startswith("{") and content.endswith("}"):
            content = content[1:-1]
        content = _PARAGRAPH_PREFIX.sub("", content, count=1)
        content = content.replace("\u2212", "-").rstrip(".")
    return content


def parse_robust(text: str) -> int | None:
    """The robust parser: last brace-matched box, wrappers stripped, then a plain ASCII integer or None."""
    if not isinstance(text, str) or len(text) > MAX_CRITIQUE_CHARS:
        return None
    content = _last_closed_box(text)
    if content is None or len(content) > _MAX_INDEX_CHARS:
        return None
    content = _normalise_index(content)
    return _to_int(content) if _INTEGER.fullmatch(content) else None


PARSERS: dict[str, Callable[[str], int | None]] = {"reference": parse_reference, "robust": parse_robust}


def vote(parsed: Sequence[int | None]) -> int | None:
    """Majority vote over the parsed indices, ignoring None; None when nothing parsed.

    Tie rule: among the most frequent values, the one that appears first in ``parsed`` wins. This is what
    ProcessBench's ``Counter(preds).most_common(1)`` does (insertion order, stable sort), and it is deterministic
    because the samples of a request come back in a fixed order for a fixed seed.
    """
    counts: dict[int, int] = {}
    for value in parsed:
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return next(value for value, count in counts.items() if count == best)


def vote_reference(critiques: Sequence[str]) -> int | None:
    """ProcessBench ``--use_voting`` exactly: vote over the extracted *strings*, then ``int()`` the winner.

    Differs from ``vote`` over parsed ints: ``"02"`` and ``"2"`` are different votes, a non-integer string can
    win (giving None), and out-of-range indices are not discarded. Use it only to reproduce published numbers.
    """
    extracted = [e for e in (extract_reference(c) for c in critiques) if e is not None]
    counts: dict[str, int] = {}
    for value in extracted:
        counts[value] = counts.get(value, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return _to_int(next(value for value, count in counts.items() if count == best))


@dataclass(frozen=True)
class JudgeVote:
    """The judge's critiques for one solution, parsed and voted.

    ``parsed[i]`` is None when critique ``i`` has no usable box or its index is out of range
    (``< -1`` or ``>= len(steps)``); those are counted in ``n_unparseable``. ``first_error`` is the vote:
    -1 = no error found, None = no usable verdict.
    """

    critiques: list[str]
    parsed: list[int | None]
    first_error: int | None
    n_unparseable: int
    parser: str


def evidence_from_critiques(critiques: Sequence[str], n_steps: int, parser: str = "reference") -> JudgeVote:
    """Parse and vote stored critiques; pure, so a relabelling run can re-parse without a model call."""
    if parser not in PARSERS:
        raise ValueError(f"unknown judge parser {parser!r}; expected one of {sorted(PARSERS)}")
    parse = PARSERS[parser]
    texts = [c if isinstance(c, str) else "" for c in critiques]
    parsed: list[int | None] = []
    for text in texts:
        index = parse(text)
        parsed.append(index if index is not None and -1 <= index < n_steps else None)
    return JudgeVote(
        critiques=texts,
        parsed=parsed,
        first_error=vote(parsed),
        n_unparseable=sum(1 for p in parsed if p is None),
        parser=parser,
    )


def judge_labels(first_error: int | None, n_steps: int) -> list[bool | None]:
    """Per-step labels for the ``judge_labels`` column (docs/labellers.md §1.3): True before the first error, False
    at it, None after (not judged); -1 gives all True; no verdict (None) gives all None."""
    return labels_from_first_error(first_error, n_steps)


def _default_key(problem_id: str, steps: Sequence[str]) -> str:
    """A request key that differs per solution, so two solutions of one problem never share a seed."""
    digest = hashlib.blake2b("\x1f".join(steps).encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    return f"{problem_id}/judge/{digest}"


def judge_search(
    problem_id: str,
    question: str,
    steps: Sequence[str],
    m: int,
    sampling: SamplingParams,
    run_seed: int,
    render: Callable[[str], str],
    *,
    parser: str = "reference",
    key: str | None = None,
    template: str = CRITIQUE_TEMPLATE,
) -> Generator[list[Request], list[list[Sample]], JudgeVote]:
    """A search coroutine (engines/driver.py): one request for ``m`` critiques, then the parsed, voted evidence.

    ``render`` turns the user message into the judge model's prompt (its chat template). The request seed is
    derived from (run seed, problem id, request key) (docs/design.md §5).
    """
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    if parser not in PARSERS:
        raise ValueError(f"unknown judge parser {parser!r}; expected one of {sorted(PARSERS)}")
    request_key = key if key is not None else _default_key(problem_id, steps)
    seeded = dataclasses.replace(sampling, seed=derive_seed(run_seed, problem_id, request_key))
    request = Request(
        prompt=render(build_judge_prompt(question, steps, template)), n=m, sampling=seeded, key=request_key
    )
    answer = yield [request]
    samples = answer[0] if answer else []
    return evidence_from_critiques([getattr(s, "text", "") for s in samples], len(steps), parser)
