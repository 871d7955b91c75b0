"""Rule-based edits of one Python code line (PRLCoder's mutations and refactors): token rewriting, nothing runs."""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass

from annotators.verifiers.code import is_code_line

__all__ = ["LineEdit", "apply_edit", "candidate_edits", "names_in"]

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


def apply_edit(lines: Sequence[str], index: int, edit: LineEdit) -> list[str]:
    """The program lines with `edit` applied (a rename also rewrites the lines after `index`)."""
    new_lines = list(lines)
    new_lines[index] = edit.text
    tokenized = _line_tokens(lines) if edit.rename is not None else None
    if edit.rename is not None and tokenized is not None:
        for row in range(index + 1, len(lines)):
            new_lines[row] = _rename_in_line(lines[row], tokenized[0][row], *edit.rename)
    return new_lines


def names_in(source: str) -> set[str]:
    """Every NAME token of a source text (parameters and imports of the prompt must not be reused)."""
    try:
        return {t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.NAME}
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return set(re.findall(r"[A-Za-z_]\w*", source))
