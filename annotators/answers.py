"""Final-answer extraction and grading: is a sample's final answer the reference answer? (docs/methods.md §4)

* `extract_answer(text)`: the last `\\boxed{}`/`\\fbox{}` (brace matched), else `#### X`, else "the (final)
  answer is X", else `Answer: X`, else the whole text if it is a bare number. After a marker, an equation chain
  gives the value after the last `=` of its first clause ("The answer is 128 + 122 = 242, which is ..." -> 242).
* `parse_reference_answer(raw, fmt)`: the gold answer from a GSM8K or MATH reference solution.
* `gold_undecidable(gold)`: why answers to a gold could not be graded in time, decided once per problem (the
  reader refuses such a problem) instead of once per sample.
* `grade(candidate, gold)`: exact string, then exact rational equality with our own bounded parser, then normalized
  string equality, then Math-Verify (gold first). Every verdict carries a short machine-readable reason, and
  `correct is None` means "could not decide" (timeouts, unparseable gold), never a silent False.
* `judge_text(text, finish_reason, gold)`: extract + grade, with a policy for truncated generations.

Model output is data (docs/security.md): nothing here calls eval/sympify/parse_expr on it. Extraction reads only
the last MAX_EXTRACT_CHARS of a generation, with linear-time patterns and no recursion. Math-Verify gets only
answers within MAX_ANSWER_CHARS (gold: MAX_GOLD_CHARS) and MAX_NESTING levels of brackets, and parses them with its
own timeouts, which use signal.alarm and therefore only work in the main thread; from any
other thread the comparison runs in a persistent single-worker process (spawned, so its tasks run in that
process's main thread) behind an overall timeout; a worker that overruns it is killed and replaced. As with any
spawn-based multiprocessing, the program's entry point must be import-safe (`if __name__ == "__main__":`).

Percent (decided here, matching Math-Verify's own behaviour): `50%` equals both `50` (a "what percent" answer)
and `0.5` (the same quantity as a fraction).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
import threading
from dataclasses import dataclass
from fractions import Fraction

from annotators import latex

# Only the tail of a generation is searched: the final answer is at the end, and it bounds the work.
MAX_EXTRACT_CHARS = 20_000
# A longer candidate is not a final answer but rambling; it is graded wrong without parsing it.
MAX_ANSWER_CHARS = 1_000
MAX_GOLD_CHARS = 10_000
# Brackets ({[( ) nested deeper than this are not handed to Math-Verify: its LaTeX parser doubles its time per level
# of bare braces past ~8 (11 levels took 3 s, 16 hit the 5 s timeout), and no final answer nests this deep.
MAX_NESTING = 8
# Bounds of the rational fast path; anything larger is "not parseable here" and goes on to Math-Verify.
MAX_DIGITS = 1_000
MAX_EXPONENT = 1_000
# Math-Verify's per-call timeouts (whole seconds: signal.alarm); MENG uses 5/5 (docs/methods.md §4).
MATH_VERIFY_TIMEOUT_S = 5
# The worker process answers one comparison (2 parses + 1 verify, each bounded above) within this, or is killed.
WORKER_TASK_TIMEOUT_S = 3 * MATH_VERIFY_TIMEOUT_S + 5.0
WORKER_STARTUP_TIMEOUT_S = 120.0
# A gold answer is tried once, when its problem is read: Math-Verify must parse it and compare it with a plain number
# within this (whole seconds: signal.alarm). A power tower such as (2^64)^(2^64) parses at once, then runs every
# comparison with a number into the grader's timeout, for every sample and completion of its problem.
GOLD_CHECK_TIMEOUT_S = 2
_GOLD_PROBE = "1"
TRUNCATION_POLICIES = ("wrong", "grade", "error")
REFERENCE_FORMATS = ("auto", "gsm8k", "math", "plain")


class TruncatedGenerationError(RuntimeError):
    """A generation hit max_tokens and the truncation policy is "error"."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of grading one answer: `correct` is None when it could not be decided; `reason` says why."""

    correct: bool | None
    reason: str
    extracted: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# Extraction

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)[ \t]*\{")
# Braces and escapes: `\{`, `\}` and `\\` are skipped as pairs, so escaped braces never count.
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS = re.compile(r"\b(?:final[ \t]+)?answer[ \t]+is\b[ \t]*:?[ \t]*([^\n]*)", re.IGNORECASE)
_ANSWER_COLON = re.compile(r"\banswer\**[ \t]*:\**[ \t]*\n?[ \t]*([^\n]*)", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"[-+]?\\?\$?[ \t]*(?:\d[\d,]*(?:\.\d+)?|\.\d+)[ \t]*\\?%?")
_SENTENCE_END = re.compile(r"\.(?=\s|$)")
# A clause ends at a comma or semicolon before a space ("242, which is ..."); `1,000` does not end one.
_CLAUSE_END = re.compile(r"[,;](?=\s)")
_MAX_BARE_NUMBER_CHARS = 100


def _matching_braces(text: str) -> dict[int, int]:
    """Map each balanced `{` to its `}` in one pass with an explicit stack (no recursion, so depth is free)."""
    stack: list[int] = []
    closing: dict[int, int] = {}
    for token in _BRACE_TOKEN.finditer(text):
        char = token.group()
        if char == "{":
            stack.append(token.start())
        elif char == "}" and stack:
            closing[stack.pop()] = token.start()
    return closing


def _last_boxed(text: str) -> str | None:
    """Content of the last balanced, non-empty `\\boxed{}`/`\\fbox{}`; unbalanced boxes are skipped."""
    opens = [match.end() - 1 for match in _BOX_OPEN.finditer(text)]
    if not opens:
        return None
    closing = _matching_braces(text)
    for open_at in reversed(opens):
        close_at = closing.get(open_at)
        if close_at is None:
            continue
        content = _clean(text[open_at + 1 : close_at])
        if content:
            return content
    return None


def _clean(answer: str) -> str:
    """Strip surrounding spaces, `$`, markdown bold, math delimiters and a trailing period, until stable."""
    previous = None
    while answer != previous:
        previous = answer
        answer = answer.strip().strip("*").strip()
        if answer.startswith(("\\(", "\\[")) and answer.endswith(("\\)", "\\]")):
            answer = answer[2:-2]
        if answer.endswith(".") and not answer.endswith("\\."):
            answer = answer[:-1]
        # An unescaped `$` at either end is a math delimiter, `\$` is a currency sign and stays.
        answer = answer.lstrip("$")
        while answer.endswith("$") and not answer.endswith("\\$"):
            answer = answer[:-1]
    return answer


def _answer_after_marker(tail: str) -> str:
    """The answer that follows "answer is" / "Answer:": a math span if it starts with one, else up to the sentence end
    (of an equation chain, the value after the last `=` of its first clause)."""
    tail = tail.strip()
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if tail.startswith(opener):
            close_at = tail.find(closer, len(opener))
            if close_at > 0:
                return _clean(tail[: close_at + len(closer)])
            break
    sentence_end = _SENTENCE_END.search(tail)
    sentence = tail[: sentence_end.start()] if sentence_end else tail
    return _equation_value(sentence) or _clean(sentence)


def _equation_value(sentence: str) -> str | None:
    """The value after the last `=` of the first clause, when that clause is an equation chain, else None.

    "128 + 122 = 242, which is the number of cups" -> "242"; "480 * 100 = 4800" -> "4800". `<=`, `>=` and `!=`
    are not equations, and a clause without `=` is left to the caller. A comma right after the marker does not end
    the clause ("The answer is, = 10 * 11 = 110 days").
    """
    sentence = sentence.lstrip(",; \t")
    clause_end = _CLAUSE_END.search(sentence)
    clause = sentence[: clause_end.start()] if clause_end else sentence
    equals_at = clause.rfind("=")
    if equals_at < 0 or clause[equals_at - 1 : equals_at] in ("<", ">", "!"):
        return None
    return _clean(clause[equals_at + 1 :]) or None


def _last_marked(text: str, marker: re.Pattern[str]) -> str | None:
    for match in reversed(list(marker.finditer(text))):
        answer = _answer_after_marker(match.group(1))
        if answer:
            return answer
    return None


def extract_answer(text: str) -> tuple[str | None, str]:
    """The final answer in a generation and how it was found.

    Methods, first hit wins (docs/methods.md §4, MENG's order): "boxed", "hashes" (`#### X`), "answer_is"
    ("The (final) answer is X"), "answer_colon" (`Answer: X`), "bare_number" (the whole text is a number);
    `(None, "none")` when nothing is found. Each method takes its last occurrence in the last MAX_EXTRACT_CHARS.
    """
    text = text[-MAX_EXTRACT_CHARS:]
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed, "boxed"
    for method, marker in (("hashes", _HASHES), ("answer_is", _ANSWER_IS), ("answer_colon", _ANSWER_COLON)):
        answer = _last_marked(text, marker)
        if answer is not None:
            return answer, method
    stripped = text.strip()
    if len(stripped) <= _MAX_BARE_NUMBER_CHARS and _BARE_NUMBER.fullmatch(stripped):
        return _clean(stripped), "bare_number"
    return None, "none"


def parse_reference_answer(raw: str, fmt: str = "auto") -> str | None:
    """The gold answer from a reference solution, or None if the format's marker is missing.

    `gsm8k`: the text after the last `####`, thousands commas removed (`1,000` -> `1000`); `math`: the content of
    the last `\\boxed{}`; `plain`: the stripped text; `auto`: gsm8k if there is a `####`, else math if there is a
    box, else plain.
    """
    if fmt not in REFERENCE_FORMATS:
        raise ValueError(f"unknown reference answer format {fmt!r}; expected one of {', '.join(REFERENCE_FORMATS)}")
    raw = raw[-MAX_EXTRACT_CHARS:]
    if fmt == "auto":
        fmt = "gsm8k" if "####" in raw else "math" if _BOX_OPEN.search(raw) else "plain"
    if fmt == "gsm8k":
        matches = list(_HASHES.finditer(raw))
        if not matches:
            return None
        answer = _clean(matches[-1].group(1))
        return re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", answer) or None
    if fmt == "math":
        return _last_boxed(raw)
    return raw.strip() or None


# ---------------------------------------------------------------------------------------------------------------
# Exact rational fast path: our own parser, bounded, no eval (docs/security.md)

_NUMBER = re.compile(r"(?P<mantissa>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE](?P<exponent>[+-]?\d+))?")
_SLASH = re.compile(r"(?P<num>[^/]+)/(?P<den>[^/]+)")
# One LaTeX vocabulary with the claim verifier (annotators/latex.py, docs/verifiers.md).
_FRAC, _TEXT_COMMAND, _DEGREES = latex.FRAC, latex.TEXT_COMMAND, latex.DEGREES
_LATEX_SPACING = re.compile(latex.LATEX_SPACING.pattern + r"|\\left|\\right")
_SPACE_NOT_BETWEEN_DIGITS = re.compile(r"(?<!\d)\s+|\s+(?!\d)")
_MINUS = latex.MINUS
# A number followed by plain words only, as chat models end: "18 dollars", "$18 per day", "40, which is the answer".
# The words carry no value; words that scale or reread the number (million, percent, ...) keep it for Math-Verify.
_NUMBER_THEN_WORDS = re.compile(
    r"(?P<number>[-+]?(?:\\?\$)?\s*\d(?:[\d,]*\d)?(?:\.\d+)?)(?P<words>(?:[\s,;:]+[A-Za-z][A-Za-z'\u2019-]*)+)[\s.!]*"
)
_SCALE_WORDS = re.compile(
    r"\b(?:hundreds?|thousands?|millions?|billions?|trillions?|dozens?|percent|per\s*cent|times|squared|cubed)\b",
    re.IGNORECASE,
)


def _unwrap_math(answer: str) -> str:
    answer = _clean(answer)
    whole_text = _TEXT_COMMAND.fullmatch(answer)
    return whole_text.group(1).strip() if whole_text else answer


def _parse_number(token: str) -> Fraction | None:
    """A signed decimal (thousands commas, bounded exponent) as an exact Fraction, or None."""
    sign = 1
    if token[:1] in ("+", "-"):
        sign, token = (-1 if token[0] == "-" else 1), token[1:]
    match = _NUMBER.fullmatch(token)
    if match is None:
        return None
    exponent_text = match.group("exponent") or "0"
    # Compare digit counts before int(): `1e999999999999` must not build a huge power of ten.
    if len(exponent_text.lstrip("+-")) > len(str(MAX_EXPONENT)) or abs(int(exponent_text)) > MAX_EXPONENT:
        return None
    return sign * Fraction(match.group("mantissa").replace(",", "")) * Fraction(10) ** int(exponent_text)


def _rational_values(answer: str) -> frozenset[Fraction] | None:
    """The exact value(s) of a plain number, `a/b` or `\\frac{a}{b}`; a percent has two readings. None if not one."""
    answer = _unwrap_math(answer).translate(_MINUS)
    if sum(char.isdigit() for char in answer) > MAX_DIGITS:
        return None
    words = _NUMBER_THEN_WORDS.fullmatch(answer)
    if words is not None and not _SCALE_WORDS.search(words.group("words")):
        answer = words.group("number")
    # Units in \text{...}, currency signs, degrees and LaTeX spacing carry no value.
    answer = _TEXT_COMMAND.sub("", answer)
    answer = _DEGREES.sub("", _LATEX_SPACING.sub("", answer)).replace("\\$", "").replace("$", "").replace("{,}", ",")
    answer = _SPACE_NOT_BETWEEN_DIGITS.sub("", answer)
    percent = answer.endswith("%")
    if percent:
        answer = answer.removesuffix("%").removesuffix("\\")
    if not answer:
        return None
    sign = 1
    if answer[0] in ("+", "-") and answer[1:2] == "\\":
        # A sign before \frac: `-\frac{1}{2}`.
        sign, answer = (-1 if answer[0] == "-" else 1), answer[1:]
    fraction = _FRAC.fullmatch(answer) or _SLASH.fullmatch(answer)
    if fraction is None:
        value = _parse_number(answer)
    else:
        numerator, denominator = _parse_number(fraction.group("num")), _parse_number(fraction.group("den"))
        value = None if numerator is None or not denominator else sign * numerator / denominator
    if value is None:
        return None
    return frozenset({value, value / 100}) if percent else frozenset({value})


# ---------------------------------------------------------------------------------------------------------------
# Normalized string equality

_WHITESPACE = re.compile(r"\s+")


def _normalize_text(answer: str) -> str:
    answer = _unwrap_math(answer)
    answer = _TEXT_COMMAND.sub(r"\1", answer)
    answer = answer.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    answer = _DEGREES.sub("", _LATEX_SPACING.sub("", answer))
    answer = _WHITESPACE.sub("", answer).rstrip(".")
    # Words are compared case-insensitively ("Monday" == "monday"); symbols keep their case (x vs X).
    return answer.lower() if len(answer) > 1 and answer.isalpha() else answer


# ---------------------------------------------------------------------------------------------------------------
# Math-Verify, gold first (docs/methods.md §4: "argument order matters")

_BRACKET = re.compile(r"[{}()\[\]]")


def _nesting(answer: str) -> int:
    """How deep brackets of any kind nest in `answer` (escaped ones count too: the bound only needs to be safe)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(answer):
        if match.group() in "{([":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(depth - 1, 0)
    return deepest


_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def _as_latex(answer: str) -> str:
    # Math-Verify only extracts LaTeX that sits in an environment (docs/methods.md §4).
    if _UNESCAPED_DOLLAR.search(answer) or any(env in answer for env in ("\\boxed", "\\(", "\\[")):
        return answer
    return f"${answer}$"


def _math_verify_compare(gold: str, candidate: str, timeout_s: int) -> tuple[bool | None, str]:
    """Math-Verify's verdict on (gold, candidate); must run in a main thread (signal.alarm timeouts)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    from math_verify.errors import TimeoutException

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]

    def parsed(answer: str) -> list:
        return parse(
            _as_latex(answer),
            extraction_config=config,
            fallback_mode="no_fallback",
            extraction_mode="first_match",
            parsing_timeout=timeout_s,
            raise_on_error=True,
        )

    try:
        try:
            gold_parsed = parsed(gold)
        except Exception:  # noqa: BLE001 - any parser failure means "unparseable", reported below
            gold_parsed = []
        if not gold_parsed:
            return None, "gold_unparseable"
        try:
            candidate_parsed = parsed(candidate)
        except Exception:  # noqa: BLE001
            candidate_parsed = []
        if not candidate_parsed:
            return False, "candidate_unparseable"
        try:
            equal = verify(gold_parsed, candidate_parsed, timeout_seconds=timeout_s, raise_on_error=True)
        except Exception:  # noqa: BLE001 - a sympy failure is "undecided", not "wrong"
            return None, "grader_error"
    except TimeoutException:
        return None, "grader_timeout"
    return (True, "math_verify_equal") if equal else (False, "math_verify_unequal")


def _warm_up() -> bool:
    """Import sympy and build Math-Verify's LaTeX grammar (over a second), so no first task pays it in its time limit."""
    _math_verify_compare("x", _GOLD_PROBE, int(WORKER_STARTUP_TIMEOUT_S))
    return True


_main_thread_warm = False


_pool: concurrent.futures.ProcessPoolExecutor | None = None
_pool_pid: int | None = None
# One task in flight at a time, so a task's timeout measures its own run, not the queue in front of it.
_pool_lock = threading.Lock()


def _worker_pool() -> concurrent.futures.ProcessPoolExecutor:
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        # spawn: a fresh interpreter, so no threads or locks are inherited from this (threaded) process.
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        _pool, _pool_pid = pool, os.getpid()
        pool.submit(_warm_up).result(timeout=WORKER_STARTUP_TIMEOUT_S)
    return _pool


def _discard_pool() -> None:
    """Kill the worker (it may be stuck past its timeout) and forget the pool; the next call starts a new one."""
    global _pool, _pool_pid
    pool, _pool, _pool_pid = _pool, None, None
    if pool is None:
        return
    # ProcessPoolExecutor has no public kill before Python 3.14; these are the processes this module started.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _math_verify_in_worker(gold: str, candidate: str, timeout_s: int, task_timeout_s: float) -> tuple[bool | None, str]:
    with _pool_lock:
        try:
            pool = _worker_pool()
        except Exception:  # noqa: BLE001 - no worker (e.g. a daemonic process, a timeout): undecided, not wrong
            _discard_pool()
            return None, "grader_unavailable"
        future = pool.submit(_math_verify_compare, gold, candidate, timeout_s)
        try:
            return future.result(timeout=task_timeout_s)
        except concurrent.futures.TimeoutError:
            _discard_pool()
            return None, "grader_timeout"
        except Exception:  # noqa: BLE001 - a crashed worker (BrokenProcessPool) is replaced on the next call
            _discard_pool()
            return None, "grader_error"


def _math_verify(gold: str, candidate: str, timeout_s: int | None = None) -> tuple[bool | None, str]:
    """Math-Verify's verdict within `timeout_s` per parse and comparison (default MATH_VERIFY_TIMEOUT_S)."""
    global _main_thread_warm
    task_timeout_s = WORKER_TASK_TIMEOUT_S if timeout_s is None else 3 * timeout_s + 5.0
    timeout_s = MATH_VERIFY_TIMEOUT_S if timeout_s is None else timeout_s
    if threading.current_thread() is threading.main_thread():
        if not _main_thread_warm:
            _warm_up()
            _main_thread_warm = True
        return _math_verify_compare(gold, candidate, timeout_s)
    return _math_verify_in_worker(gold, candidate, timeout_s, task_timeout_s)


def gold_undecidable(gold: str) -> str | None:
    """Why no answer could be graded against `gold` in time, or None when it can; meant to run once per problem.

    Only a gold that `grade` would hand to Math-Verify is tried (an empty, too long, too deep or plain rational one
    never is): it is compared with a plain number within GOLD_CHECK_TIMEOUT_S. Past that, every answer that is not
    the gold's own text would cost Math-Verify's full timeout. A gold Math-Verify cannot parse is not refused (exact
    and normalized matches still grade it, at no cost), nor is one when no grader process can be started.
    """
    gold = gold.strip()
    if not gold or len(gold) > MAX_GOLD_CHARS or _nesting(gold) > MAX_NESTING or _rational_values(gold) is not None:
        return None
    _, reason = _math_verify(gold, _GOLD_PROBE, GOLD_CHECK_TIMEOUT_S)
    if reason == "grader_timeout":
        return f"Math-Verify cannot compare it with a number within {GOLD_CHECK_TIMEOUT_S} s"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Grading


def grade(candidate: str | None, gold: str) -> Verdict:
    """Whether `candidate` equals `gold` (docs/methods.md §4, steps 3-4).

    Reasons: missing_answer, answer_too_long, answer_too_deep, missing_gold, gold_too_long, gold_too_deep,
    exact_match, rational_equal, rational_mismatch, normalized_match, math_verify_equal, math_verify_unequal,
    candidate_unparseable, gold_unparseable, grader_timeout, grader_error, grader_unavailable. Two plain numbers
    that differ are final (rational_mismatch) without asking Math-Verify, whose float rounding could call 0.333333
    equal to 1/3. Math-Verify only sees answers within MAX_ANSWER_CHARS / MAX_GOLD_CHARS and MAX_NESTING; like a
    too-long one, a too-deep candidate is wrong and a too-deep gold undecided.
    """
    if candidate is None or not candidate.strip():
        return Verdict(False, "missing_answer", None)
    candidate = candidate.strip()
    if len(candidate) > MAX_ANSWER_CHARS:
        return Verdict(False, "answer_too_long", candidate[:MAX_ANSWER_CHARS])
    gold = gold.strip()
    if not gold:
        return Verdict(None, "missing_gold", candidate)
    if len(gold) > MAX_GOLD_CHARS:
        return Verdict(None, "gold_too_long", candidate)
    if candidate == gold:
        return Verdict(True, "exact_match", candidate)
    candidate_values, gold_values = _rational_values(candidate), _rational_values(gold)
    if candidate_values is not None and gold_values is not None:
        if candidate_values & gold_values:
            return Verdict(True, "rational_equal", candidate)
        return Verdict(False, "rational_mismatch", candidate)
    if _normalize_text(candidate) == _normalize_text(gold):
        return Verdict(True, "normalized_match", candidate)
    if _nesting(gold) > MAX_NESTING:
        return Verdict(None, "gold_too_deep", candidate)
    if _nesting(candidate) > MAX_NESTING:
        return Verdict(False, "answer_too_deep", candidate)
    correct, reason = _math_verify(gold, candidate)
    return Verdict(correct, reason, candidate)


def judge_text(text: str, finish_reason: str, gold: str, truncation_policy: str = "wrong") -> Verdict:
    """Extract the final answer from a generation and grade it.

    A generation that hit max_tokens (`finish_reason == "length"`) is, by `truncation_policy`: "wrong" ->
    Verdict(False, "truncated") (keeps the MC denominator at n), "grade" -> graded like any other, "error" ->
    TruncatedGenerationError. Any finish reason other than "stop" and "length" (an engine error) is undecided:
    Verdict(None, "generation_error").
    """
    if truncation_policy not in TRUNCATION_POLICIES:
        raise ValueError(
            f"unknown truncation policy {truncation_policy!r}; expected one of {', '.join(TRUNCATION_POLICIES)}"
        )
    answer, _method = extract_answer(text)
    if finish_reason == "length":
        if truncation_policy == "wrong":
            return Verdict(False, "truncated", answer)
        if truncation_policy == "error":
            raise TruncatedGenerationError(f"generation truncated at max_tokens ({len(text)} chars)")
    elif finish_reason != "stop":
        return Verdict(None, "generation_error", answer)
    return grade(answer, gold)
