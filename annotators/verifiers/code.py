"""Line-level labels for Python programs with unit tests (HumanEval format), from execution in the sandbox.

Steps are code lines. A problem holds the prompt (imports, signature, docstring) in `question`, the reference
body in `answer` and `meta = {"test": "def check(candidate): ...", "entry_point": "name"}`. The program run for
a list of lines is `question + "\\n".join(lines)`, then the tests, then `check(entry_point)`
(`annotators.verifiers.sandbox.run_tests`). Nothing here executes code in this process.

Three labellers:

- `mutation_labels`: PRLCoder's recipe with rule-based edits (Ye et al., arXiv 2502.01715). For a reference
  program that passes, each code line in turn is mutated (plausible bug) or refactored (meant to keep
  semantics), the variant is run, and the changed line is labelled True if the tests still pass, else False;
  the lines before it are True (unchanged lines of a passing program), the lines after it None (masked, as in
  the recipe). `teacher_variant_search` does the same with a teacher model's edits, as a search generator.
- `prefix_completion_search`: Dai et al. (arXiv 2410.17621): from each line prefix, k policy completions are
  run; the line's value is the fraction that pass and its label is value > 0.
- `CodeVerifier`: labels a given full solution, rule in its docstring.
"""

from __future__ import annotations

import dataclasses
import io
import random
import re
import tokenize
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from annotators.verifiers.base import StepVerdict, as_config
from annotators.verifiers.sandbox import SandboxLimits, SandboxResult, require_isolation, run_tests
from schemas.records import Problem, Request, Sample, SamplingParams, derive_seed

__all__ = [
    "CodeVerifier",
    "HUMANEVAL_STOPS",
    "LineEdit",
    "LineVariant",
    "MutationLabels",
    "PrefixLabels",
    "assemble",
    "candidate_edits",
    "code_lines",
    "is_code_line",
    "mutation_labels",
    "parse_teacher_line",
    "prefix_completion_search",
    "teacher_prompt",
    "teacher_variant_search",
    "truncate_completion",
]

# Codex/HumanEval stop sequences: a completion ends where the next top-level statement begins.
HUMANEVAL_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")

_OP_SWAPS = {
    "+": ("-",),
    "-": ("+",),
    "*": ("/", "+"),
    "/": ("*", "//"),
    "//": ("/", "%"),
    "%": ("//",),
    "<": ("<=", ">"),
    "<=": ("<", ">="),
    ">": (">=", "<"),
    ">=": (">", "<="),
    "==": ("!=",),
    "!=": ("==",),
    "+=": ("-=",),
    "-=": ("+=",),
    "*=": ("+=",),
}
_NAME_SWAPS = {
    "and": "or",
    "or": "and",
    "True": "False",
    "False": "True",
    "min": "max",
    "max": "min",
    "any": "all",
    "all": "any",
    "break": "continue",
    "continue": "break",
}
_BINARY_LEFT = {tokenize.NAME, tokenize.NUMBER, tokenize.STRING}  # a token after which `*`/`-` is binary
_KEYWORDS_NOT_OPERANDS = {"return", "in", "not", "and", "or", "if", "elif", "while", "else", "yield", "is", "lambda"}


@dataclass(frozen=True)
class LineEdit:
    """One candidate replacement of a line; with `rename` (old, new) the later lines are renamed too."""

    kind: str  # "mutation" | "refactor"
    rule: str
    text: str
    rename: tuple[str, str] | None = None


@dataclass(frozen=True)
class LineVariant:
    """A program with one line changed, run against the tests and labelled line by line."""

    line_index: int
    kind: str
    rule: str
    original: str
    replacement: str
    lines: tuple[str, ...]
    labels: tuple[StepVerdict, ...]
    status: str  # the sandbox status of the variant


@dataclass(frozen=True)
class MutationLabels:
    """All labelled variants of one reference program; empty with a reason when the reference does not pass."""

    problem_id: str
    reference_status: str
    variants: tuple[LineVariant, ...]
    reason: str = ""


@dataclass(frozen=True)
class PrefixLabels:
    """Per-line MC values (fraction of passing completions), labels and the statuses behind them."""

    values: tuple[float | None, ...]
    verdicts: tuple[StepVerdict, ...]
    statuses: tuple[tuple[str, ...], ...]  # per line, the sandbox status of each completion


# --------------------------------------------------------------------------------------------------- programs


def code_lines(text: str) -> list[str]:
    """Split a solution body into lines (steps), without trailing blank lines."""
    return text.rstrip().split("\n") if text.strip() else []


def is_code_line(line: str) -> bool:
    """A line that says something: not blank, not only a comment."""
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def assemble(problem: Problem, lines: Sequence[str]) -> tuple[str, int]:
    """The program for `lines` after the problem's prompt, and the 1-based program line where lines[0] sits."""
    prompt = problem.question
    if prompt and not prompt.endswith("\n"):
        prompt += "\n"
    return prompt + "\n".join(lines) + "\n", prompt.count("\n") + 1


def _tests_of(problem: Problem) -> tuple[str, str | None]:
    return str(problem.meta.get("test") or ""), problem.meta.get("entry_point") or None


def truncate_completion(text: str, stops: Sequence[str] = HUMANEVAL_STOPS) -> str:
    """Cut a completion at the first stop sequence (the start of the next top-level statement)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def _run_all(
    problem: Problem, jobs: Sequence[tuple[str, str, str | None]], limits: SandboxLimits, workers: int
) -> list[SandboxResult]:
    """Run (program, tests, entry point) jobs of one problem in the sandbox, in order; threads only wait."""

    def run(job: tuple[str, str, str | None]) -> SandboxResult:
        return _run_one(problem, *job, limits)

    if workers <= 1 or len(jobs) <= 1:
        return [run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, jobs))


def _run_one(
    problem: Problem, program: str, tests: str, entry_point: str | None, limits: SandboxLimits
) -> SandboxResult:
    """One sandboxed run; the prompt is the trusted context, so a completion cannot redefine what the tests use."""
    return run_tests(program, tests, entry_point, limits, context=problem.question)


# --------------------------------------------------------------------------------------------- rule-based edits


def _line_tokens(lines: Sequence[str]) -> tuple[list[list[tokenize.TokenInfo]], list[bool]] | None:
    """Tokens of each line (0-based) from tokenizing the lines together, and whether each line is a whole
    statement (starts and ends its logical line); None if the lines do not tokenize."""
    per_line: list[list[tokenize.TokenInfo]] = [[] for _ in lines]
    whole = [False] * len(lines)
    logical_start = 1
    try:
        for tok in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            if tok.start[0] == tok.end[0] and 1 <= tok.start[0] <= len(lines):
                per_line[tok.start[0] - 1].append(tok)
            elif tok.type == tokenize.STRING:  # a multi-line string: its lines are not code
                for row in range(tok.start[0], min(tok.end[0], len(lines)) + 1):
                    per_line[row - 1] = [tok]
            if tok.type == tokenize.NEWLINE:
                if tok.start[0] == logical_start and tok.start[0] <= len(lines):
                    whole[tok.start[0] - 1] = True
                logical_start = tok.start[0] + 1
            elif tok.type in (tokenize.NL, tokenize.COMMENT) and tok.start[0] == logical_start:
                logical_start = tok.start[0] + (tok.type == tokenize.NL)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return per_line, whole


def _replace(line: str, tok: tokenize.TokenInfo, new: str) -> str:
    return line[: tok.start[1]] + new + line[tok.end[1] :]


def candidate_edits(lines: Sequence[str], index: int, reserved_names: set[str] | None = None) -> list[LineEdit]:
    """Rule-based mutations and refactors of `lines[index]`, in a fixed order (no randomness here).

    `reserved_names` are the names of the surrounding code (the prompt: parameters, imports): never renamed,
    never reused as a new name.
    """
    tokenized = _line_tokens(lines)
    line = lines[index]
    if tokenized is None or not is_code_line(line):
        return []
    all_tokens, whole = tokenized
    toks = [t for t in all_tokens[index] if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT)]
    toks = [t for t in toks if t.type not in (tokenize.INDENT, tokenize.DEDENT)]
    if not toks or (len(toks) == 1 and toks[0].type == tokenize.STRING):
        return []  # docstring lines are not code
    edits: list[LineEdit] = []
    for pos, tok in enumerate(toks):
        before = toks[pos - 1] if pos else None
        if tok.type == tokenize.OP and tok.string in _OP_SWAPS:
            binary = before is not None and (
                (before.type in _BINARY_LEFT and before.string not in _KEYWORDS_NOT_OPERANDS)
                or before.string in (")", "]", "}")
            )
            if tok.string in ("*", "/", "//", "%") and not binary:
                continue  # `*args`, `**kw`: not arithmetic
            for new in _OP_SWAPS[tok.string]:
                edits.append(LineEdit("mutation", f"op {tok.string}->{new}", _replace(line, tok, new)))
        elif tok.type == tokenize.NAME and tok.string in _NAME_SWAPS:
            new = _NAME_SWAPS[tok.string]
            edits.append(LineEdit("mutation", f"name {tok.string}->{new}", _replace(line, tok, new)))
        elif tok.type == tokenize.NAME and tok.string == "not" and pos + 1 < len(toks):
            dropped = line[: tok.start[1]] + line[toks[pos + 1].start[1] :]
            edits.append(LineEdit("mutation", "drop not", dropped))
        elif tok.type == tokenize.NUMBER and re.fullmatch(r"0|[1-9][0-9]*", tok.string):
            value = int(tok.string)
            for new_value in (value + 1, value - 1):
                edits.append(LineEdit("mutation", f"int {value}->{new_value}", _replace(line, tok, str(new_value))))
    indent = line[: len(line) - len(line.lstrip())]
    first = toks[0]
    if not whole[index]:
        pass  # part of a multi-line statement: only the token swaps above apply
    elif first.string == "return" and len(toks) > 1:
        value_text = line[toks[1].start[1] : toks[-1].end[1]]
        edits.append(LineEdit("mutation", "drop return value", indent + "return"))
        edits.append(LineEdit("refactor", "return via variable", f"{indent}_result = {value_text}; return _result"))
    elif first.string in ("if", "elif", "while") and toks[-1].string == ":" and len(toks) > 2:
        condition = line[toks[1].start[1] : toks[-1].start[1]].strip()
        edits.append(LineEdit("refactor", "explicit bool", f"{indent}{first.string} bool({condition}):"))
        edits.append(LineEdit("mutation", "negate condition", f"{indent}{first.string} not ({condition}):"))
    elif (
        first.type == tokenize.NAME
        and len(toks) > 2
        and toks[1].type == tokenize.OP
        and toks[1].string in ("+=", "-=", "*=")
    ):
        rest = line[toks[2].start[1] : toks[-1].end[1]]
        expanded = f"{indent}{first.string} = {first.string} {toks[1].string[0]} ({rest})"
        edits.append(LineEdit("refactor", "expand augmented assignment", expanded))
    rename = _rename_edit(lines, all_tokens, index, reserved_names or set()) if whole[index] else None
    if rename is not None:
        edits.append(rename)
    seen = {line}
    unique = []
    for edit in edits:
        if edit.text not in seen:
            seen.add(edit.text)
            unique.append(edit)
    return unique


def _rename_edit(
    lines: Sequence[str], all_tokens: list[list[tokenize.TokenInfo]], index: int, reserved: set[str]
) -> LineEdit | None:
    """Rename a variable first bound on this line (`x = ...`, `for x in`), here and in every later line."""
    toks = [t for t in all_tokens[index] if t.type in (tokenize.NAME, tokenize.OP)]
    if len(toks) < 2:
        return None
    if toks[0].type == tokenize.NAME and toks[1].string == "=" and toks[0].string not in _KEYWORDS_NOT_OPERANDS:
        name = toks[0].string
    elif toks[0].string == "for" and toks[1].type == tokenize.NAME:
        name = toks[1].string
    else:
        return None
    if name in reserved or any(t.type == tokenize.NAME and t.string == name for row in all_tokens[:index] for t in row):
        return None  # a parameter, or bound earlier too: renaming from here on would break the program
    used = reserved | {t.string for row in all_tokens for t in row if t.type == tokenize.NAME}
    new = next(f"{name}_{i}" for i in range(1, 1000) if f"{name}_{i}" not in used)
    return LineEdit(
        "refactor",
        f"rename {name}->{new}",
        _rename_in_line(lines[index], all_tokens[index], name, new),
        rename=(name, new),
    )


def _rename_in_line(line: str, toks: list[tokenize.TokenInfo], name: str, new: str) -> str:
    """Replace the NAME tokens `name` in one line, skipping attributes (`.name`) and keyword arguments."""
    out = line
    for pos in range(len(toks) - 1, -1, -1):  # right to left keeps earlier offsets valid
        tok = toks[pos]
        if tok.type != tokenize.NAME or tok.string != name:
            continue
        if pos and toks[pos - 1].string == ".":
            continue
        after = toks[pos + 1].string if pos + 1 < len(toks) else ""
        before = toks[pos - 1].string if pos else ""
        if after == "=" and before in ("(", ","):
            continue  # f(name=...): a keyword argument, not the variable
        out = out[: tok.start[1]] + new + out[tok.end[1] :]
    return out


def _apply_edit(lines: Sequence[str], index: int, edit: LineEdit) -> list[str]:
    """The program lines with `edit` applied (a rename also rewrites the lines after `index`)."""
    new_lines = list(lines)
    new_lines[index] = edit.text
    tokenized = _line_tokens(lines) if edit.rename is not None else None
    if edit.rename is not None and tokenized is not None:
        for row in range(index + 1, len(lines)):
            new_lines[row] = _rename_in_line(lines[row], tokenized[0][row], *edit.rename)
    return new_lines


def _variant_labels(n_lines: int, index: int, result: SandboxResult, lines: Sequence[str]) -> tuple[StepVerdict, ...]:
    """PRLCoder labels: lines before the edit True, the edited line by the tests, the lines after masked."""
    if result.passed:
        changed = StepVerdict(True, "the variant still passes all tests")
    elif result.status == "error":  # the sandbox or the tests broke, not the variant
        changed = StepVerdict(None, f"sandbox error: {result.reason}")
    else:  # failed, syntax_error, timeout, memory, output_limit, killed: the line broke the program
        changed = StepVerdict(False, f"the variant fails ({result.status}): {result.reason}")
    labels = []
    for i in range(n_lines):
        if i < index:
            labels.append(StepVerdict(True if is_code_line(lines[i]) else None, "unchanged line of a passing program"))
        elif i == index:
            labels.append(changed)
        else:
            labels.append(StepVerdict(None, "after the edited line: masked"))
    return tuple(labels)


def mutation_labels(
    problem: Problem,
    program_lines: Sequence[str],
    *,
    seed: int = 0,
    mutations_per_line: int = 2,
    refactors_per_line: int = 1,
    limits: SandboxLimits | None = None,
    workers: int = 1,
    slowdown: float = 10.0,
) -> MutationLabels:
    """PRLCoder-style labelled variants of a reference program, one edited line each (deterministic per seed).

    Variants get a wall-clock limit of `slowdown` times the reference's run (at least 2 s, at most
    `limits.wall_s`): a mutated loop that never ends costs seconds, not the full limit.
    """
    limits = limits or SandboxLimits()
    tests, entry_point = _tests_of(problem)
    if not tests:
        return MutationLabels(problem.problem_id, "error", (), "the problem has no unit tests")
    lines = list(program_lines)
    reference = _run_one(problem, assemble(problem, lines)[0], tests, entry_point, limits)
    if not reference.passed:
        reason = f"the reference program does not pass ({reference.status}: {reference.reason})"
        return MutationLabels(problem.problem_id, reference.status, (), reason)
    wall_s = min(limits.wall_s, max(2.0, slowdown * reference.wall_s))
    variant_limits = dataclasses.replace(limits, wall_s=wall_s, cpu_s=max(1, min(limits.cpu_s, int(wall_s) + 1)))
    prompt_names = _names_in(problem.question)
    chosen: list[tuple[int, LineEdit, list[str]]] = []
    for index in range(len(lines)):
        edits = candidate_edits(lines, index, prompt_names)
        rng = random.Random(derive_seed(seed, problem.problem_id, f"mutate/{index}"))
        for kind, quota in (("mutation", mutations_per_line), ("refactor", refactors_per_line)):
            pool = [e for e in edits if e.kind == kind]
            for edit in rng.sample(pool, min(quota, len(pool))):
                chosen.append((index, edit, _apply_edit(lines, index, edit)))
    jobs = [(assemble(problem, variant)[0], tests, entry_point) for _, _, variant in chosen]
    results = _run_all(problem, jobs, variant_limits, workers)
    variants = tuple(
        LineVariant(
            index,
            edit.kind,
            edit.rule,
            lines[index],
            edit.text,
            tuple(variant),
            _variant_labels(len(variant), index, result, variant),
            result.status,
        )
        for (index, edit, variant), result in zip(chosen, results, strict=True)
    )
    return MutationLabels(problem.problem_id, reference.status, variants)


def _names_in(source: str) -> set[str]:
    """Every NAME token of a source text (parameters and imports of the prompt must not be reused)."""
    try:
        return {t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.NAME}
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return set(re.findall(r"[A-Za-z_]\w*", source))


# --------------------------------------------------------------------------------------------- teacher edits


def teacher_prompt(problem: Problem, lines: Sequence[str], index: int, kind: str) -> str:
    """The request text asking a teacher model to rewrite one line ("mutation": plausible bug; "refactor")."""
    task = {
        "mutation": "Rewrite that line with one plausible bug, the kind of mistake a programmer could make.",
        "refactor": "Rewrite that line differently so that the program behaves exactly the same.",
    }[kind]
    program, first = assemble(problem, lines)
    return (
        "Here is a Python program.\n\n```python\n"
        f"{program}```\n\n"
        f"Line {first + index} is:\n```python\n{lines[index].strip()}\n```\n"
        f"{task} Answer with the new line only, in a ```python block.\n"
    )


def parse_teacher_line(text: str, original: str, max_chars: int = 400) -> str | None:
    """The single new line from a teacher's answer, re-indented like `original`; None if unusable or unchanged."""
    fenced = re.search(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", text, flags=re.DOTALL)
    body = fenced.group(1) if fenced else text
    candidates = [ln for ln in body.split("\n") if ln.strip() and not ln.strip().startswith("```")]
    if not candidates:
        return None
    new = candidates[0].strip()
    if len(new) > max_chars or new == original.strip():
        return None
    indent = original[: len(original) - len(original.lstrip())]
    return indent + new


def teacher_variant_search(
    problem: Problem,
    program_lines: Sequence[str],
    sampling: SamplingParams,
    run_seed: int,
    *,
    kinds: Sequence[str] = ("mutation", "refactor"),
    limits: SandboxLimits | None = None,
    workers: int = 1,
) -> Generator[list[Request], list[list[Sample]], list[LineVariant]]:
    """A search (engines/driver.py): one teacher request per (code line, kind), then each edit labelled by tests."""
    limits = limits or SandboxLimits()
    tests, entry_point = _tests_of(problem)
    lines = list(program_lines)
    if not tests:
        return []  # nothing could label the edits: ask the teacher nothing
    asks: list[tuple[int, str]] = [(i, kind) for i in range(len(lines)) if is_code_line(lines[i]) for kind in kinds]
    requests = []
    for index, kind in asks:
        key = f"{problem.problem_id}/teacher/{kind}/l{index}"
        seeded = dataclasses.replace(sampling, seed=derive_seed(run_seed, problem.problem_id, key))
        requests.append(Request(teacher_prompt(problem, lines, index, kind), 1, seeded, key))
    answers = yield requests
    chosen: list[tuple[int, LineEdit, list[str]]] = []
    for (index, kind), samples in zip(asks, answers, strict=True):
        usable = [s for s in samples if s.finish_reason != "error"]
        new = parse_teacher_line(usable[0].text, lines[index]) if usable else None
        if new is not None:
            edit = LineEdit(kind, f"teacher {kind}", new)
            chosen.append((index, edit, _apply_edit(lines, index, edit)))
    results = _run_all(problem, [(assemble(problem, v)[0], tests, entry_point) for _, _, v in chosen], limits, workers)
    return [
        LineVariant(
            index,
            f"teacher-{edit.kind}",
            edit.rule,
            lines[index],
            edit.text,
            tuple(variant),
            _variant_labels(len(variant), index, result, variant),
            result.status,
        )
        for (index, edit, variant), result in zip(chosen, results, strict=True)
    ]


# ------------------------------------------------------------------------------------------ prefix completions


def prefix_completion_search(
    problem: Problem,
    program_lines: Sequence[str],
    k: int,
    sampling: SamplingParams,
    run_seed: int,
    *,
    limits: SandboxLimits | None = None,
    workers: int = 1,
    stops: Sequence[str] = HUMANEVAL_STOPS,
) -> Generator[list[Request], list[list[Sample]], PrefixLabels]:
    """Per-line MC values from k policy completions of each line prefix, run against the tests (Dai et al.).

    One request per code line (prefix = prompt + lines[:i+1]); a blank or comment line adds nothing to the
    prefix, so it takes the result of the code line before it. Completions are cut at `stops`; samples whose
    finish_reason is "error" do not count. Label: True if any completion passes, False if none of at least
    one valid completion does, None without a valid completion.
    """
    limits = limits or SandboxLimits()
    tests, entry_point = _tests_of(problem)
    lines = list(program_lines)
    owner = _prefix_owners(lines)
    asked = sorted(set(owner))
    requests = []
    prefixes = {}
    for index in asked:
        prefixes[index] = assemble(problem, lines[: index + 1])[0]
        key = f"{problem.problem_id}/code-prefix/l{index}"
        seeded = dataclasses.replace(sampling, seed=derive_seed(run_seed, problem.problem_id, key))
        requests.append(Request(prefixes[index], k, seeded, key))
    answers = yield requests
    jobs: list[tuple[str, str, str | None]] = []
    slots: list[int] = []
    for index, samples in zip(asked, answers, strict=True):
        for sample in samples:
            if sample.finish_reason != "error":
                jobs.append((prefixes[index] + truncate_completion(sample.text, stops), tests, entry_point))
                slots.append(index)
    results = _run_all(problem, jobs, limits, workers) if tests else []
    by_line: dict[int, list[SandboxResult]] = {index: [] for index in asked}
    for index, result in zip(slots, results, strict=False):
        by_line[index].append(result)
    values: list[float | None] = []
    verdicts: list[StepVerdict] = []
    statuses: list[tuple[str, ...]] = []
    for index in range(len(lines)):
        runs = by_line[owner[index]]
        statuses.append(tuple(r.status for r in runs))
        if not tests:
            values.append(None)
            verdicts.append(StepVerdict(None, "the problem has no unit tests"))
            continue
        if not runs:
            values.append(None)
            verdicts.append(StepVerdict(None, "no valid completion from this prefix"))
            continue
        passing = sum(r.passed for r in runs)
        values.append(passing / len(runs))
        shared = "" if owner[index] == index else f" (same prefix as line {owner[index]})"
        if passing:
            verdicts.append(StepVerdict(True, f"{passing}/{len(runs)} completions pass the tests{shared}"))
        else:
            worst = max(sorted(set(statuses[-1])), key=statuses[-1].count)
            verdicts.append(StepVerdict(False, f"0/{len(runs)} completions pass (mostly {worst}){shared}"))
    return PrefixLabels(tuple(values), tuple(verdicts), tuple(statuses))


def _prefix_owners(lines: Sequence[str]) -> list[int]:
    """For each line, the line whose prefix it shares: itself for code lines, else the code line before it."""
    owners = []
    last_code = None
    for index, line in enumerate(lines):
        if is_code_line(line) or last_code is None:
            last_code = index
        owners.append(last_code)
    return owners


# -------------------------------------------------------------------------------------------------- verifier


class CodeVerifier:
    """Labels a given full solution (steps = code lines) by running its unit tests in the sandbox.

    Rule:
    - passes all tests -> every code line True (blank/comment lines None);
    - fails with line evidence: the exception surfaced at step j (the deepest traceback frame among the steps;
      a helper in the prompt is skipped) or the parser stopped at step j (SyntaxError) -> step j False: the
      program as given breaks there. Steps before j are None (the real mistake may sit earlier: a wrong value
      computed above, an unclosed bracket the parser noticed late), steps after j None (not judged);
    - fails without a line in the steps (a wrong result caught by an assert in the tests, an error inside the
      prompt's own code), time-out, memory, sandbox error, no tests -> every step None.

    Built only where every isolation layer of the sandbox works: elsewhere the constructor raises
    `SandboxUnavailable` with the reason, so a run refuses at its start instead of running code with less.
    """

    name = "code-exec"

    def __init__(self, config: dict[str, Any] | None = None, limits: SandboxLimits | None = None) -> None:
        options = as_config(config)
        known = {f.name for f in dataclasses.fields(SandboxLimits)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown code verifier option(s) {unknown}; known: {sorted(known)}")
        self.limits = limits or SandboxLimits(**options)
        require_isolation(self.limits)

    def verify(self, problem: Problem, steps: list[str]) -> list[StepVerdict]:
        """One verdict per step (code line)."""
        tests, entry_point = _tests_of(problem)
        if not tests:
            return [StepVerdict(None, "the problem has no unit tests")] * len(steps)
        program, first = assemble(problem, steps)
        result = _run_one(problem, program, tests, entry_point, self.limits)
        if result.passed:
            return [
                StepVerdict(True, "the program passes all tests")
                if is_code_line(s)
                else StepVerdict(None, "blank or comment line")
                for s in steps
            ]
        in_steps = [line - first for line in result.error_lines if 0 <= line - first < len(steps)]
        index = in_steps[-1] if in_steps else -1  # the deepest frame inside the steps, not the prompt's code
        if result.status in ("failed", "syntax_error") and index >= 0:
            verdicts = [StepVerdict(None, "before the failing line: not judged") for _ in steps]
            what = "does not compile" if result.status == "syntax_error" else "raises"
            verdicts[index] = StepVerdict(False, f"{what} here: {result.reason}")
            for later in range(index + 1, len(steps)):
                verdicts[later] = StepVerdict(None, "after the failing line: not judged")
            return verdicts
        reason = f"tests {result.status} without line-level evidence: {result.reason}"
        return [StepVerdict(None, reason)] * len(steps)
