"""Symbolic claims: identities with variables, solved equations substituted back, and numbers with radicals or
logarithms, checked through sympy (docs/verifiers.md, "The symbolic check").

sympy only ever sees objects built here from the verifier's own parse tree (`annotators/verifiers/expr.py`):
`sympy.Integer`, `sympy.Rational`, `sympy.Symbol`, `sympy.Add`, ... Model text never reaches sympify,
parse_expr, parse_latex or eval. Every check is bounded: a side larger than `max_symbolic_nodes` nodes, a power
with a variable above `_MAX_SYMBOLIC_EXPONENT`, or a factorial above `max_factorial` is not checked.

Order of the checks: a spot check with exact rationals at seeded points first (a difference there is a proof
that two rational functions differ), then sympy: numeric evaluation to `_DIGITS` digits for radicals and
logarithms, and a bounded `simplify` before a symbolic difference is reported.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from annotators import latex
from annotators.verifiers.expr import (
    ArithmeticLimits,
    Budget,
    Node,
    NotRational,
    Parser,
    Reading,
    Skip,
    Tok,
    evaluate,
    literal_decimals,
    near,
    size,
    stated_matches,
    tokenize,
    variables,
)

__all__ = ["SymbolicClaim", "SymbolicResult", "compare_constants", "equations_of", "scan_math"]

_DIGITS = 40
_MAX_SYMBOLIC_EXPONENT = 16
_SPOT_POINTS = 4
_SPOT_TRIES = 10
_SEED = 20_241_204  # fixed: the same claim always gets the same points
_MAX_SEGMENT_CHARS = 2_000
_MAX_SEGMENTS = 200
_MAX_CASES = 4  # equations kept per variable: "x - 2 = 0 or x - 3 = 0, so x = 2 or x = 3" solves each case
# Letters that are constants in competition text, not variables: the imaginary unit and Euler's number.
_CONSTANT_LETTERS = frozenset("ie")


@dataclass(frozen=True)
class SymbolicResult:
    holds: bool
    detail: str  # why it fails, or how it was checked


@dataclass(frozen=True)
class SymbolicClaim:
    """One checked claim with variables: an identity (`(x+1)^2 = x^2+2x+1`) or a solution substituted back."""

    text: str
    holds: bool
    detail: str
    check: str  # "identity" or "substitution"


# ---------------------------------------------------------------- the sympy bridge


def to_sympy(node: Node, limits: ArithmeticLimits) -> Any:
    """The sympy object for a parse-tree node, built constructor by constructor; Skip outside the limits."""
    import sympy

    kind = node[0]
    if kind == "num":
        return sympy.Rational(node[1].numerator, node[1].denominator)
    if kind == "var":
        return sympy.Symbol(node[1], positive=True)  # the spot points are positive too
    if kind == "neg":
        return sympy.Mul(sympy.Integer(-1), to_sympy(node[1], limits))
    if kind == "pct":
        return sympy.Mul(to_sympy(node[1], limits), sympy.Rational(1, 100))
    if kind == "fact":
        value = to_sympy(node[1], limits)
        if not (value.is_Integer and 0 <= value <= limits.max_factorial):
            raise Skip("factorial of a value that is not a small integer")
        return sympy.factorial(value)
    if kind == "fn":
        args = [to_sympy(arg, limits) for arg in node[2:]]
        if node[1] == "sqrt":
            return sympy.sqrt(args[0])
        if node[1] == "ln":
            return sympy.log(args[0])
        if node[1] == "log":
            return sympy.log(args[1], args[0])
        n, k = args
        if not (n.is_Integer and k.is_Integer and 0 <= n <= limits.max_bits):
            raise Skip("binomial coefficient of values that are not small integers")
        return sympy.binomial(n, k)
    _, op, left, right = node
    a, b = to_sympy(left, limits), to_sympy(right, limits)
    if op == "+":
        return sympy.Add(a, b)
    if op == "-":
        return sympy.Add(a, sympy.Mul(sympy.Integer(-1), b))
    if op == "*":
        return sympy.Mul(a, b)
    if op == "/":
        if b == 0:
            raise Skip("division by zero")
        return sympy.Mul(a, sympy.Pow(b, sympy.Integer(-1)))
    if not (b.is_Rational and b.q <= 6 and abs(b) <= limits.max_exponent):
        raise Skip("exponent is not a small integer or a fraction with a small denominator")
    if a.free_symbols and abs(b) > _MAX_SYMBOLIC_EXPONENT:
        raise Skip(f"power of a variable above {_MAX_SYMBOLIC_EXPONENT}")
    if abs(b.p) * max(1, _bits(a)) > limits.max_bits:
        raise Skip(f"value above {limits.max_bits} bits")
    return sympy.Pow(a, b)


def _bits(value: Any) -> int:
    if value.is_Rational:
        return max(int(value.p).bit_length(), int(value.q).bit_length())
    return 64  # a radical or a symbol: a nominal size, the exponent bound does the rest


def _numeric(expr: Any) -> Any:
    """`expr` to _DIGITS digits as a sympy Float; Skip unless it is a finite real number."""
    value = expr.evalf(_DIGITS)
    if not (value.is_real and value.is_finite and value.is_Number):
        raise Skip("not a finite real number")
    return value


def _fraction(value: Any) -> Fraction:
    return Fraction(str(value))


def compare_constants(lhs: Node, rhs: Node, approx: bool, limits: ArithmeticLimits) -> SymbolicResult:
    """A claim between numbers with radicals or logarithms: equal to _DIGITS digits, or a stated decimal that
    rounds or truncates the other side (the same rule as for rationals)."""
    if size(lhs) > limits.max_symbolic_nodes or size(rhs) > limits.max_symbolic_nodes:
        raise Skip(f"expression larger than {limits.max_symbolic_nodes} nodes")
    lv, rv = _numeric(to_sympy(lhs, limits)), _numeric(to_sympy(rhs, limits))
    exact_l, exact_r = _fraction(lv), _fraction(rv)
    scale = max(Fraction(1), abs(exact_l), abs(exact_r))
    if abs(exact_l - exact_r) <= scale * Fraction(1, 10**30):
        return SymbolicResult(True, "equal to 30 digits")
    for exact, node in ((exact_l, rhs), (exact_r, lhs)):
        decimals = literal_decimals(node, Reading())
        if decimals is not None and stated_matches(
            exact, _fraction(_numeric(to_sympy(node, limits))), decimals, approx
        ):
            return SymbolicResult(True, "a rounding of the exact value")
    if approx and near(exact_l, exact_r):
        return SymbolicResult(True, "within 1 %")
    return SymbolicResult(False, f"{_show(lv)} vs {_show(rv)}")


def _show(value: Any) -> str:
    return f"≈{float(value):.6g}" if abs(float(value)) < 1e300 else "a huge value"


# ---------------------------------------------------------------- identities and substitutions


def _points(names: list[str], rng: random.Random) -> dict[str, Fraction]:
    # positive non-integers: away from the special points 0, ±1 and integer roots that make distinct sides agree
    return {name: Fraction(rng.randint(2, 97), rng.randint(2, 13)) for name in names}


def spot_check(lhs: Node, rhs: Node, budget: Budget) -> tuple[bool, str] | None:
    """Compare both sides at seeded rational points: (False, where they differ) proves they are not the same
    rational function; (True, ...) when they agree at every point; None when too few points could be evaluated."""
    names = sorted(variables(lhs) | variables(rhs))
    rng = random.Random(_SEED)
    agreed = 0
    for _ in range(_SPOT_TRIES):
        env = _points(names, rng)
        try:
            left = evaluate(lhs, Reading(), budget, env)
            right = evaluate(rhs, Reading(), budget, env)
        except NotRational:
            raise
        except Skip:
            continue  # a pole or an out-of-range power at this point: try another one
        if left != right:
            where = ", ".join(f"{name} = {value}" for name, value in env.items())
            return False, f"at {where} the left side is {_short(left)} and the right side {_short(right)}"
        agreed += 1
        if agreed == _SPOT_POINTS:
            return True, f"equal at {_SPOT_POINTS} points"
    return None


def _short(value: Fraction) -> str:
    text = str(value)
    if len(text) <= 24:
        return text
    try:
        return f"≈{float(value):.6g}"
    except OverflowError:  # past ~1e308: a float cannot show it
        return f"a number of about {len(str(abs(value.numerator))) - len(str(value.denominator)) + 1} digits"


def check_identity(lhs: Node, rhs: Node, limits: ArithmeticLimits, budget: Budget) -> SymbolicResult | None:
    """Whether `lhs = rhs` holds for every value of its variables; None when it could not be decided."""
    if size(lhs) > limits.max_symbolic_nodes or size(rhs) > limits.max_symbolic_nodes:
        return None
    try:
        spot = spot_check(lhs, rhs, budget)
    except NotRational:
        return _identity_with_sympy(lhs, rhs, limits)
    if spot is None:
        return None
    return SymbolicResult(*spot)


def _identity_with_sympy(lhs: Node, rhs: Node, limits: ArithmeticLimits) -> SymbolicResult | None:
    """Radicals with variables: numeric points through sympy, then a bounded simplify before a difference counts."""
    import sympy

    left, right = to_sympy(lhs, limits), to_sympy(rhs, limits)
    symbols = sorted(left.free_symbols | right.free_symbols, key=str)
    rng = random.Random(_SEED)
    for _ in range(_SPOT_POINTS):
        env = {symbol: sympy.Rational(rng.randint(2, 97), rng.randint(2, 13)) for symbol in symbols}
        lv, rv = _numeric(left.subs(env)), _numeric(right.subs(env))
        if abs(_fraction(lv) - _fraction(rv)) > Fraction(1, 10**20) * max(1, abs(_fraction(lv))):
            if sympy.simplify(sympy.Add(left, sympy.Mul(sympy.Integer(-1), right))) == 0:
                return None  # the points disagree but simplify says equal: unsure
            return SymbolicResult(False, f"{_show(lv)} vs {_show(rv)} at a sample point")
    return SymbolicResult(True, f"equal at {_SPOT_POINTS} points")


# ---------------------------------------------------------------- reading formulas

# Words before a stated solution that say it was derived, not tried: "so $x = 4$", "$2x = 8 \implies x = 4$".
_CONCLUSION_RE = re.compile(
    r"(?:\b(?:so|thus|therefore|hence|gives?|giving|get|gets|obtain|find|yields?|solution|solving|means)\b|[:;])"
    r"[^A-Za-z]{0,20}$",
    re.I,
)
# Words that make a stated value a trial or a case rather than a solution of the equation before it.
_TRIAL_RE = re.compile(
    r"\b(?:try|trying|test|testing|check|checking|suppose|assume|if|when|plug|plugging|substitut\w*|guess|case|"
    r"not|no|other|another|second|first|also)\b|≠|\\neq?\b",
    re.I,
)


# Words (from \text{...}) that separate two statements inside one formula; any other word ends the reading.
_CONNECTIVES = frozenset("and or so then thus hence where since for if with gives get i e ie".split())


# What may sit between two solutions of one equation: "$x = 2$ or $x = 3$", "$x = 2$, $x = 3$".
_LIST_RE = re.compile(r"[\s$,]{0,8}(?:or|and)?[\s$,]{0,8}")


@dataclass
class _Piece:
    members: list[Node]
    texts: list[str]
    segment: tuple[int, int]  # where its formula starts and ends in the step text
    arrow_before: bool  # "\implies", "\Rightarrow", a comma or `;` opened this piece inside its formula


def math_segments(text: str, dollar_is_math: bool) -> list[tuple[int, int, str]]:
    """(start, end, content) of every formula: `\\(..\\)`, `\\[..\\]`, and `$..$`/`$$..$$` when `$` marks formulas."""
    out: list[tuple[int, int, str]] = []
    open_at: tuple[str, int] | None = None
    for match in _DELIMITER_RE.finditer(text):
        mark = match.group()
        if mark.startswith("$") and (not dollar_is_math or latex.escaped(text, match.start())):
            continue
        if open_at is None:
            if mark in ("\\(", "\\[", "$", "$$"):
                open_at = (mark, match.end())
            continue
        opener, begin = open_at
        if _CLOSER[opener] == mark:
            if 0 < match.start() - begin <= _MAX_SEGMENT_CHARS:
                out.append((begin, match.start(), text[begin : match.start()]))
            open_at = None
            if len(out) >= _MAX_SEGMENTS:
                break
    return out


_DELIMITER_RE = re.compile(r"\\[()\[\]]|\$\$?")
_CLOSER = {"\\(": "\\)", "\\[": "\\]", "$": "$", "$$": "$$"}


def _pieces(where: tuple[int, int], segment: str, normalise: Any, limits: ArithmeticLimits) -> list[_Piece]:
    """Split a formula at `,` `;` arrows and words; keep the pieces that read fully as `E = E (= E ...)`."""
    plain = normalise(segment, prose=False)
    toks = tokenize(plain, limits.max_tokens)
    out: list[_Piece] = []
    run: list[Tok] = []
    poisoned = False
    arrow = False
    for tok in [*toks, Tok("sep", "\n", len(plain), len(plain))]:
        is_word = tok.kind == "word" and len(tok.text) > 1
        if tok.kind == "sep" or (is_word and tok.text.lower() in _CONNECTIVES):
            if run and not poisoned:
                piece = _read_piece(run, plain, where, arrow, limits)
                if piece is not None:
                    out.append(piece)
            arrow = tok.kind == "sep" and tok.text in ",;"
            run, poisoned = [], False
            continue
        if is_word or tok.text == "≈":
            poisoned = True  # an unknown command (\lim), a product of letters (ax), an approximation: no claim
        run.append(tok)
    return out


def _read_piece(
    run: list[Tok], plain: str, where: tuple[int, int], arrow: bool, limits: ArithmeticLimits
) -> _Piece | None:
    members: list[list[Tok]] = [[]]
    for tok in run:
        if tok.kind == "eq":
            members.append([])
        else:
            members[-1].append(tok)
    if len(members) < 2 or any(not m for m in members):
        return None
    if members[0][0].kind == "op" and members[0][0].text in "+*/^":
        return None  # cut out of a larger expression
    try:
        nodes = [Parser(m, limits, variables=True).parse() for m in members]
    except Skip:
        return None
    texts = [" ".join(plain[m[0].start : m[-1].end].split()) for m in members]
    return _Piece(nodes, texts, where, arrow)


def _lone_variable(node: Node) -> str | None:
    return node[1] if node[0] == "var" else None


_Equation = tuple[Node, Node, str, int, int]  # left, right, its text, where its formula ends, its paragraph


def scan_math(
    text: str,
    dollar_is_math: bool,
    normalise: Any,
    limits: ArithmeticLimits,
    budget: Budget,
    earlier: dict[str, list[_Equation]] | None = None,
) -> list[SymbolicClaim]:
    """Every identity and every stated solution in the formulas of one step, checked. `earlier`: the previous
    step's equations (`equations_of`), which a solution in this step's first paragraph may be put back into."""
    claims: list[SymbolicClaim] = []
    equations = {name: [(eq[0], eq[1], eq[2], 0, 0) for eq in eqs] for name, eqs in (earlier or {}).items()}
    _walk(text, dollar_is_math, normalise, limits, budget, equations, claims)
    return claims


def equations_of(
    text: str, dollar_is_math: bool, normalise: Any, limits: ArithmeticLimits, budget: Budget
) -> dict[str, list[_Equation]]:
    """The latest single-variable equations per variable in one step, oldest first (nothing is checked)."""
    equations: dict[str, list[_Equation]] = {}
    _walk(text, dollar_is_math, normalise, limits, budget, equations, None)
    return equations


def _walk(
    text: str,
    dollar_is_math: bool,
    normalise: Any,
    limits: ArithmeticLimits,
    budget: Budget,
    equations: dict[str, list[_Equation]],
    claims: list[SymbolicClaim] | None,
) -> None:
    solutions: dict[str, int] = {}  # where the formula of the latest solution checked for a variable ends
    for start, end, segment in math_segments(text, dollar_is_math):
        for piece in _pieces((start, end), segment, normalise, limits):
            paragraph = text.count("\n\n", 0, start)
            members = piece.members
            names = [variables(m) for m in members]
            solved = _lone_variable(members[0])
            if claims is not None:
                claims.extend(_identities(piece, limits, budget))
            if solved and all(not n for n in names[1:]):
                if claims is None:
                    continue
                claim = _substitute(text, piece, solved, equations.get(solved, []), paragraph, solutions, budget)
                if claim is not None:
                    claims.append(claim)
                    solutions[solved] = end
                continue
            if len(members) == 2 and len(names[0] | names[1]) == 1:
                (name,) = names[0] | names[1]
                if _lone_variable(members[1]) is None:
                    known = equations.setdefault(name, [])
                    known.append((members[0], members[1], " = ".join(piece.texts), end, paragraph))
                    del known[:-_MAX_CASES]
                    solutions.pop(name, None)


def _identities(piece: _Piece, limits: ArithmeticLimits, budget: Budget) -> list[SymbolicClaim]:
    """Adjacent members of a chain of three or more that both hold the same variables: a rewrite, so an identity.

    Every member must hold a variable: `x = 2y = 6`, `r^2 + s^2 - 4 = r + s = -1` and `2x + 3 = 11` are
    equations, not rewrites. A pair with different variables, or with a lone variable (a definition), is skipped.
    So is a chain with `i` or `e` (the imaginary unit, Euler's number: `(1+i)^2 = 1 + 2i + i^2 = 2i`), and a pair
    whose polynomial degrees differ: `x^3 = x * x^2 = x^2 + x` reduces powers by a relation (`x^2 = x + 1`) stated
    before or in the problem, not by an identity.
    """
    out: list[SymbolicClaim] = []
    if len(piece.members) < 3 or not all(variables(m) for m in piece.members):
        return out  # "r^2 + s^2 - 4 = r + s = -1": a chain that ends in a number is an equation, not a rewrite
    if any(variables(m) & _CONSTANT_LETTERS or _signed_power(m) for m in piece.members):
        return out
    for i in range(len(piece.members) - 1):
        left, right = piece.members[i], piece.members[i + 1]
        names = variables(left)
        if not names or names != variables(right) or _lone_variable(left) or _lone_variable(right):
            continue
        if _degree(left) != _degree(right):
            continue
        try:
            result = check_identity(left, right, limits, budget)
        except Skip:
            continue
        if result is not None:
            text = f"{piece.texts[i]} = {piece.texts[i + 1]}"
            out.append(SymbolicClaim(text, result.holds, result.detail, "identity"))
    return out


def _degree(node: Node) -> int | None:
    """The total degree of a polynomial side, or None when it is not a polynomial (a quotient by a variable, a
    radical, a symbolic exponent)."""
    kind = node[0]
    if kind == "num":
        return 0
    if kind == "var":
        return 1
    if kind == "neg":
        return _degree(node[1])
    if kind != "bin":
        return 0 if not variables(node) else None
    _, op, left, right = node
    a, b = _degree(left), _degree(right)
    if a is None or b is None:
        return None
    if op in "+-":
        return max(a, b)
    if op == "*":
        return a + b
    if op == "/":
        return a if b == 0 else None
    if right[0] == "num" and right[1].denominator == 1 and 0 <= right[1] <= _MAX_SYMBOLIC_EXPONENT:
        return a * int(right[1])
    return None if a else 0


def _rounded_integer(left: Node, right: Node, name: str, value: Fraction, budget: Budget) -> bool:
    """An integer answer next to a root that is not an integer: the equation changes sign strictly between value - 1
    and value + 1 and is zero at neither ("12b = 100, so b = 8 boxes"). An off-by-one answer to an equation with an
    integer root (x = 5 for 2x + 3 = 11) is not excused."""
    if value.denominator != 1:
        return False
    try:
        below, above = (
            evaluate(left, Reading(), budget, {name: v}) - evaluate(right, Reading(), budget, {name: v})
            for v in (value - 1, value + 1)
        )
    except Skip:
        return False
    return below != 0 and above != 0 and (below < 0) != (above < 0)


def _signed_power(node: Node) -> bool:
    """A power with a variable exponent and a base that is not a positive number: `(-1)^{2k}` is only defined for
    the integers the text means, not at the spot check's fractional points."""
    if node[0] == "bin" and node[1] == "^" and variables(node[3]):
        if not (node[2][0] == "num" and node[2][1] > 0):
            return True
    children = node[2:] if node[0] in ("bin", "fn") else node[1:] if node[0] in ("neg", "pct", "fact") else ()
    return any(isinstance(child, tuple) and _signed_power(child) for child in children)


def _substitute(
    text: str,
    piece: _Piece,
    name: str,
    equations: list[_Equation],
    paragraph: int,
    solutions: dict[str, int],
    budget: Budget,
) -> SymbolicClaim | None:
    """A stated solution `x = c` put back into the recent equations in x of the same paragraph: it holds if it
    satisfies one of them (the cases of "x - 2 = 0 or x - 3 = 0, so x = 2 or x = 3"), and fails if it satisfies
    none; the reason names the latest.

    Only when the words say it was solved: an arrow or a comma before it in the same formula, or "so", "thus",
    "gives", ... before its formula, or "or"/"and" after the previous solution ("$x = 2$ or $x = 3$").
    """
    begin = piece.segment[0]
    previous = solutions.get(name)
    listed = previous is not None and _LIST_RE.fullmatch(text[previous:begin]) is not None
    cases = [eq for eq in equations if eq[4] == paragraph and (listed or previous is None or eq[3] > previous)]
    if not cases:
        return None  # a new value for a letter already solved, with no new equation read: the letter is reused
    left, right, equation_text, equation_end, _ = cases[-1]
    between = text[equation_end:begin] if equation_end <= begin else ""
    if _TRIAL_RE.search(between):
        return None  # "try x = 1", "if x = 2", "x = 3 is not a solution": a trial, not a solution
    if not (piece.arrow_before or listed or (between and _CONCLUSION_RE.search(between[-40:]))):
        return None  # nothing says the value was solved from the equation
    value_node = piece.members[1]
    try:
        value = evaluate(value_node, Reading(), budget)
        env = {name: value}
        for case_left, case_right, case_text, _, _ in cases[:-1]:
            if evaluate(case_left, Reading(), budget, env) == evaluate(case_right, Reading(), budget, env):
                text_ = f"{name} = {piece.texts[1]} in {case_text}"
                return SymbolicClaim(text_, True, "the solution satisfies the equation", "substitution")
        lv, rv = evaluate(left, Reading(), budget, env), evaluate(right, Reading(), budget, env)
    except Skip:
        return None  # a radical solution or a pole: left unchecked
    claim_text = f"{name} = {piece.texts[1]} in {equation_text}"
    if lv == rv:
        return SymbolicClaim(claim_text, True, "the solution satisfies the equation", "substitution")
    decimals = literal_decimals(value_node, Reading())
    if decimals or _rounded_integer(left, right, name, value, budget):
        return None  # a rounded root, "x = 1.41" for x^2 = 2, "n = 15" years for 1.05^n = 2: not checked
    detail = f"{name} = {piece.texts[1]} gives {_short(lv)} = {_short(rv)}"
    return SymbolicClaim(claim_text, False, detail, "substitution")
