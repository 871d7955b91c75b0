"""LaTeX clean-up shared by the answer grader (`annotators/answers.py`) and the claim verifier
(`annotators/verifiers/arithmetic.py`); the reading rules are in docs/verifiers.md.

Every pattern here is linear: no nested quantifiers, no two adjacent runs that can match the same text. Brace
groups are matched only one level deep (`[^{}]*`) and nested ones are peeled innermost-first a bounded number of
times, so the work is at most `passes x len(text)`.
"""

from __future__ import annotations

import re

__all__ = [
    "DEGREES",
    "FRAC",
    "LATEX_SPACING",
    "MINUS",
    "TEXT_COMMAND",
    "THOUSANDS_SPACE",
    "escaped",
    "expand_fracs",
    "math_delimiters_to",
    "unwrap_text_commands",
]

# \text{...} and friends hold words or units, never a value.
TEXT_COMMAND = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}"
)
# One level of \frac{a}{b} (also \dfrac, \tfrac); nested ones are expanded by repeated passes.
FRAC = re.compile(r"\\[dt]?frac\s*\{(?P<num>[^{}]*)\}\s*\{(?P<den>[^{}]*)\}")
# `\s*(?:\{\s*)?`, not `\s*\{?\s*`: two space runs around an optional brace backtrack quadratically on "^" + spaces.
DEGREES = re.compile(r"\^\s*(?:\{\s*)?\\circ\s*\}?|°")
# Thin spaces and other spacing commands carry nothing.
LATEX_SPACING = re.compile(r"\\[,;:! ]|\\q?quad\b|~")
# Digit-group separators inside a number: 14{,}000, 14\,000, 14\ 000, 14,\!000.
THOUSANDS_SPACE = re.compile(r"(?<=\d)(?:\{,\}|\\,|\\ |,\\!)(?=\d{3}(?!\d))")
# Unicode minus and dashes read as a minus sign.
MINUS = str.maketrans({"\u2212": "-", "\u2013": "-"})

_MATH_DELIMITER = re.compile(r"\\[()\[\]]|\$\$?")
_FRAC_PASSES = 8


def unwrap_text_commands(text: str, replacement: str = r" \1 ") -> str:
    """`\\text{ apples}` -> ` apples ` (or whatever `replacement` makes of the inner text)."""
    return TEXT_COMMAND.sub(replacement, text)


def expand_fracs(text: str, passes: int = _FRAC_PASSES) -> str:
    """`\\frac{a}{b}` -> `((a)/(b))`, innermost first, at most `passes` levels (deeper ones are left as written)."""
    for _ in range(passes):
        text, count = FRAC.subn(r"((\g<num>)/(\g<den>))", text)
        if not count:
            break
    return text


def math_delimiters_to(text: str, separator: str) -> str:
    """Replace every math delimiter (`$`, `$$`, `\\(`, `\\)`, `\\[`, `\\]`) by `separator`; `\\$` is a dollar sign
    and stays. Used when a text is LaTeX: a claim never spans two formulas or the prose between them."""
    return _MATH_DELIMITER.sub(lambda m: m.group() if escaped(text, m.start()) else separator, text)


def escaped(text: str, at: int) -> bool:
    """Whether the character at `at` is escaped: `\\$` is, `\\\\$` (a line break, then `$`) is not."""
    count = 0
    while at - count - 1 >= 0 and text[at - count - 1] == "\\" and count < 64:  # bounded look-back
        count += 1
    return count % 2 == 1
