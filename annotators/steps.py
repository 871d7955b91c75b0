"""Cut a solution text into steps, losslessly.

`split_steps(text)` returns the steps (stripped) and `step_ends`, the char offset in `text` where each step ends,
so that `text[:step_ends[t]]` is exactly the solution prefix through step t (what an MC rollout continues from).
Invariants, for every t:

* `steps[t] == text[step_ends[t] - len(steps[t]) : step_ends[t]]` (a step is a verbatim slice of `text`), except
  with `lines`, whose step is that slice without its blank lines (`text[step_ends[t - 1]:step_ends[t]]` stripped,
  blank lines dropped);
* `step_ends` is strictly increasing and a prefix never ends in whitespace, so the continuation starts with the
  separator (`"\\n\\n"`, `" Step 2:"`), as it did in the original sample.

Splitters:

* `double_newline`: blank lines separate steps (openr/OmegaPRM v2, docs/methods.md §1.2);
* `step_markers`: a `Step N:` marker starts a step (Math-Shepherd prompts, the tiny model's
  ` Step 1: 9*9=81 Step 2: 81+24=105 Answer: 105`); text before the first marker is a step of its own;
* `lines`: every non-empty line is a step, except that a line with no content of its own (a bare list marker such as
  `1.`, `-`, `*`, or a short heading ending in `:` without digits, such as `Solution:`) joins the next line's step
  (the previous step's when it is the last line); blank lines inside a step (before an attached answer) are dropped
  from its text, never from the offsets;
* `regex`: a user separator regex (zero-width patterns such as `(?=Step)` split before a match);
* `auto`: step markers if the text has one, else blank lines if it has one, else lines.

A trailing final-answer piece (`Answer: X`, `The answer is X`, `#### X`, a `\\boxed{}` line) is attached to the
last step instead of becoming a step (Math-Shepherd merges its answer line the same way, docs/methods.md §2.2).
Empty pieces are dropped, and pieces beyond `max_steps` are merged into the last step. Every built-in pattern runs
in linear time, and a text longer than `MAX_TEXT_CHARS` is not split at all (no steps, so nothing of it is labelled).
"""

from __future__ import annotations

import re

SPLITTERS = ("auto", "double_newline", "step_markers", "lines", "regex")
DEFAULT_MAX_STEPS = 64

# A longer text is not split (no steps): no policy sample is this long unless it ran away, and it bounds the work.
MAX_TEXT_CHARS = 1_000_000

# A `Step N:` marker at the start of the text or after whitespace, optionally as a markdown heading or in bold.
# `[ \t]*(?:\*\*[ \t]*)?`, not `[ \t]*(?:\*\*)?[ \t]*`: two space runs around an optional piece backtrack
# quadratically over "Step 1" followed by spaces (3 s on 20,000 of them).
_STEP_MARKER = re.compile(r"(?<!\S)(?:#{1,6}[ \t]*|\*\*)?[Ss]tep[ \t]*\d+[ \t]*(?:\*\*[ \t]*)?(?::|\.(?=\s))")
# A blank line, possibly holding spaces; runs of blank lines leave empty pieces that are dropped.
_DOUBLE_NEWLINE = re.compile(r"\n[ \t\r\f\v]*\n")
_LINE_BREAK = re.compile(r"\n")
# A line that carries no content of its own under `lines`: a bare list marker, or a short heading with no digits.
_LIST_MARKER = re.compile(r"(?:\d{1,3}[.)]|[-*+\u2022])")
_MAX_HEADING_CHARS = 40

# Final-answer pieces: only short ones qualify, so a long paragraph that happens to start with "The answer" stays a step.
_MAX_ANSWER_PIECE_CHARS = 300
_ANSWER_PIECE = re.compile(
    r"####|(?:final[ \t]+answer[ \t]*:\s*)?(?:(?:so|thus|therefore|hence)[ \t]*,?[ \t]*)?(?:the[ \t]+)?"
    r"(?:final[ \t]+)?answer[ \t]*(?:is\b|:)",
    re.IGNORECASE,
)
_BOXED_LINE = re.compile(r"(?:\$\$?|\\\[|\\\()?\s*\\(?:boxed|fbox)\s*\{.*\}\s*(?:\$\$?|\\\]|\\\))?\s*\.?", re.DOTALL)


def split_steps(
    text: str, splitter: str = "auto", pattern: str | None = None, max_steps: int = DEFAULT_MAX_STEPS
) -> tuple[list[str], list[int]]:
    """Split `text` into stripped steps and their end offsets (see the module docstring for the invariants).

    Raises ValueError for an unknown splitter, a missing or invalid `pattern` with `splitter="regex"`, a
    `pattern` given to another splitter, or `max_steps < 1`. A text longer than MAX_TEXT_CHARS has no steps.
    """
    if splitter not in SPLITTERS:
        raise ValueError(f"unknown splitter {splitter!r}; expected one of {', '.join(SPLITTERS)}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    if splitter == "regex":
        separator = _compile_separator(pattern)
    elif pattern is not None:
        raise ValueError(f"pattern is only used with splitter='regex', not splitter={splitter!r}")

    if len(text) > MAX_TEXT_CHARS:
        return [], []
    if splitter == "auto":
        splitter = _auto_splitter(text)
    if splitter == "step_markers":
        spans = _marker_spans(text)
    elif splitter == "double_newline":
        spans = _separator_spans(text, _DOUBLE_NEWLINE)
    elif splitter == "lines":
        spans = _merge_contentless_lines(text, _separator_spans(text, _LINE_BREAK))
    else:
        spans = _separator_spans(text, separator)

    spans = _attach_final_answer(text, spans)
    if len(spans) > max_steps:
        # Extra text is kept, merged into the last allowed step, so the last prefix is still the whole solution.
        spans = spans[: max_steps - 1] + [(spans[max_steps - 1][0], spans[-1][1])]
    if splitter == "lines":
        return [_without_blank_lines(text[start:end]) for start, end in spans], [end for _, end in spans]
    return [text[start:end] for start, end in spans], [end for _, end in spans]


def prefix(text: str, step_ends: list[int], t: int) -> str:
    """The solution prefix through step `t` (0-based): `text[:step_ends[t]]`. Negative `t` is an error, not 'from the end'."""
    if not 0 <= t < len(step_ends):
        raise IndexError(f"step index {t} out of range for {len(step_ends)} steps")
    return text[: step_ends[t]]


def _compile_separator(pattern: str | None) -> re.Pattern[str]:
    if pattern is None:
        raise ValueError("splitter='regex' needs a separator pattern")
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"invalid step separator pattern {pattern!r}: {error}") from error


def _auto_splitter(text: str) -> str:
    if _STEP_MARKER.search(text):
        return "step_markers"
    # Leading or trailing blank lines do not make a text paragraph-structured.
    if _DOUBLE_NEWLINE.search(text.strip()):
        return "double_newline"
    return "lines"


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span without surrounding whitespace, or None if nothing is left."""
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return None
    left = start + (len(piece) - len(piece.lstrip()))
    return left, left + len(stripped)


def _spans_between(text: str, boundaries: list[tuple[int, int]]) -> list[tuple[int, int]]:
    spans = (_trim(text, start, end) for start, end in boundaries)
    return [span for span in spans if span is not None]


def _separator_spans(text: str, separator: re.Pattern[str]) -> list[tuple[int, int]]:
    boundaries = []
    start = 0
    for match in separator.finditer(text):
        boundaries.append((start, match.start()))
        start = match.end()
    boundaries.append((start, len(text)))
    return _spans_between(text, boundaries)


def _marker_spans(text: str) -> list[tuple[int, int]]:
    # The marker belongs to the step it opens; the text before the first marker is a step of its own.
    cuts = [0] + [match.start() for match in _STEP_MARKER.finditer(text)] + [len(text)]
    return _spans_between(text, list(zip(cuts, cuts[1:], strict=False)))


def _is_contentless_line(line: str) -> bool:
    """A bare list marker (`1.`, `-`) or a short heading ending in `:` without digits (`Solution:`, `**Answer:**`)."""
    if len(line) > _MAX_HEADING_CHARS:
        return False
    if _LIST_MARKER.fullmatch(line):
        return True
    heading = line.strip("*#_ \t")
    return heading.endswith(":") and not any(char.isdigit() for char in heading)


def _merge_contentless_lines(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Join each contentless line to the next line's step; a contentless last line joins the step before it."""
    merged: list[tuple[int, int]] = []
    pending_start: int | None = None
    for start, end in spans:
        if pending_start is None:
            pending_start = start
        if not _is_contentless_line(text[start:end]):
            merged.append((pending_start, end))
            pending_start = None
    if pending_start is not None:
        if merged:
            merged[-1] = (merged[-1][0], spans[-1][1])
        else:
            merged.append((pending_start, spans[-1][1]))
    return merged


def _without_blank_lines(piece: str) -> str:
    return "\n".join(line for line in piece.split("\n") if line.strip())


def _is_answer_piece(piece: str) -> bool:
    if len(piece) > _MAX_ANSWER_PIECE_CHARS:
        return False
    return bool(_ANSWER_PIECE.match(piece) or _BOXED_LINE.fullmatch(piece))


def _attach_final_answer(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    n_answer_pieces = 0
    while n_answer_pieces < len(spans) - 1:
        start, end = spans[-1 - n_answer_pieces]
        if not _is_answer_piece(text[start:end]):
            break
        n_answer_pieces += 1
    if n_answer_pieces == 0:
        return spans
    last_step = len(spans) - 1 - n_answer_pieces
    return spans[:last_step] + [(spans[last_step][0], spans[-1][1])]
