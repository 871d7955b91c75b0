"""Tokens, a bounded recursive-descent parser and an exact evaluator for the claim verifier (docs/verifiers.md).

The parse tree is the only thing the checks read: `evaluate` computes it with exact rationals, and
`annotators/verifiers/symbolic.py` builds sympy objects from the same nodes. Model text never reaches eval, sympify
or any other parser of strings.

Nodes: ("num", value, decimals) | ("var", name) | ("neg", node) | ("pct", node) | ("fact", node)
| ("bin", op, left, right) | ("fn", name, *arguments) with name in sqrt, log (base first), ln, binom.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any, NamedTuple

__all__ = [
    "Abort",
    "ArithmeticLimits",
    "Budget",
    "Node",
    "NotRational",
    "Parser",
    "Reading",
    "Skip",
    "Tok",
    "agree",
    "evaluate",
    "has_kind",
    "has_operator",
    "leftmost_number",
    "literal_decimals",
    "size",
    "stated_matches",
    "tokenize",
    "variables",
]


@dataclass(frozen=True)
class ArithmeticLimits:
    """Work bounds per step; anything above them is reported, never computed."""

    max_chars: int = 20_000
    max_tokens: int = 5_000
    max_digits: int = 30
    max_exponent: int = 64
    max_bits: int = 4_096
    max_depth: int = 40
    max_side_tokens: int = 256
    max_ops: int = 5_000
    max_factorial: int = 200  # 200! has 1,246 bits: within max_bits
    max_symbolic_nodes: int = 80  # a side larger than this is not handed to sympy
    symbolic: bool = True  # run the sympy-backed checks (claims with variables or radicals)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, bool) and value <= 0:
                raise ValueError(f"ArithmeticLimits.{f.name} must be positive, got {value}")


class Skip(Exception):
    """A claim that cannot be checked (too large, unparseable, ...); the message says why."""


class NotRational(Skip):
    """The value is not a rational number (a radical, a logarithm): only the symbolic check can compare it."""


class Abort(Exception):
    """The step's work budget is spent."""


# ---------------------------------------------------------------- tokens

_TOKEN_RE = re.compile(
    r"(?P<num>\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"|(?P<fn>\\(?:sqrt|d?t?binom|log|ln)(?![A-Za-z]))"
    r"|(?P<op>[-+*/^])"
    r"|(?P<sub>_)"
    r"|(?P<fact>(?<=[\d)])!)"  # a `!` glued to a number or a bracket: a factorial (or an exclamation)
    r"|(?P<lp>\()"
    r"|(?P<rp>\))"
    r"|(?P<pct>%)"
    r"|(?P<eq>[=≈])"
    r"|(?P<word>\\?[^\W\d_]+)"
    r"|(?P<space>\s+)"
    r"|(?P<sep>.)",
    re.S,
)


class Tok(NamedTuple):  # a tuple, not a dataclass: the tokenizer makes one per word and is the hot loop
    kind: str
    text: str
    start: int
    end: int
    unit: bool = False  # a unit phrase after this number was dropped ("5 pairs")


def tokenize(text: str, max_tokens: int) -> list[Tok]:
    """Tokens of normalised text; a line break is kept as a `sep` (it ends a claim), other spaces are dropped."""
    toks: list[Tok] = []
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup or "sep"
        if kind == "space":
            if "\n" in m.group():
                toks.append(Tok("sep", "\n", m.start(), m.end()))
            continue
        text_ = m.group()
        if kind == "fn":
            text_ = text_.replace("dbinom", "binom").replace("tbinom", "binom")
        toks.append(Tok(kind, text_, m.start(), m.end()))
        if len(toks) > max_tokens:
            raise Abort(f"more than {max_tokens} tokens")
    return toks


# ---------------------------------------------------------------- parser (recursive descent, bounded)

Node = tuple[Any, ...]


class Parser:
    """Parses one side of a claim. With `variables=True`, single letters are symbols and juxtaposition
    multiplies (`2x`, `3(x+1)`, `(x+1)(x-1)`); a letter glued to `(` is read as a function and refused."""

    def __init__(self, toks: list[Tok], limits: ArithmeticLimits, variables: bool = False) -> None:
        self.toks = toks
        self.i = 0
        self.depth = 0
        self.limits = limits
        self.variables = variables

    def parse(self) -> Node:
        if len(self.toks) > self.limits.max_side_tokens:
            raise Skip(f"expression longer than {self.limits.max_side_tokens} tokens")
        if not self.toks:
            raise Skip("empty side")
        node = self._expr()
        if self.i != len(self.toks):
            raise Skip(f"unexpected {self.toks[self.i].text!r}")
        return node

    def _peek(self, kind: str, texts: str = "") -> bool:
        if self.i >= len(self.toks):
            return False
        t = self.toks[self.i]
        return t.kind == kind and (not texts or t.text in texts)

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise Skip(f"nesting deeper than {self.limits.max_depth}")

    def _expr(self) -> Node:
        node = self._term()
        while self._peek("op", "+-"):
            op = self.toks[self.i].text
            self.i += 1
            node = ("bin", op, node, self._term())
        return node

    def _term(self) -> Node:
        node = self._unary()
        while True:
            if self._peek("op", "*/"):
                op = self.toks[self.i].text
                self.i += 1
            elif self._implicit_product():
                op = "*"
            else:
                return node
            node = ("bin", op, node, self._unary())

    def _implicit_product(self) -> bool:
        """4(40), (2)(3), 2\\sqrt{3}; with variables also 2x, x y, (x+1)x. Without a space only, for brackets."""
        if self.i >= len(self.toks):
            return False
        prev, cur = self.toks[self.i - 1], self.toks[self.i]
        if prev.kind not in ("num", "rp", "fact") and not self._is_var(prev):
            return False
        if cur.kind == "lp":
            if self._is_var(prev):
                raise Skip(f"{prev.text}(...) may be a function")
            return prev.end == cur.start or self.variables
        if cur.kind == "fn":
            return True
        return self.variables and self._is_var(cur)

    def _is_var(self, tok: Tok) -> bool:
        return self.variables and tok.kind == "word" and len(tok.text) == 1

    def _unary(self) -> Node:
        self._enter()
        if self._peek("op", "+-"):
            op = self.toks[self.i].text
            self.i += 1
            inner = self._unary()
            node = ("neg", inner) if op == "-" else inner
        else:
            node = self._power()
        self.depth -= 1
        return node

    def _power(self) -> Node:
        base = self._postfix()
        if self._peek("op", "^"):
            self.i += 1
            return ("bin", "^", base, self._unary())  # right-associative: 2^3^2 = 2^(3^2)
        return base

    def _postfix(self) -> Node:
        node = self._primary()
        while True:
            if self._peek("pct"):
                node = ("pct", node)
            elif self._peek("fact"):
                if self.i + 1 < len(self.toks) and self.toks[self.i + 1].kind == "fact":
                    raise Skip("double factorial")
                node = ("fact", node)
            else:
                return node
            self.i += 1

    def _primary(self) -> Node:
        if self.i >= len(self.toks):
            raise Skip("expression ends early")
        t = self.toks[self.i]
        if t.kind == "num":
            self.i += 1
            return _number(t.text, self.limits)
        if t.kind == "lp":
            self._enter()
            self.i += 1
            node = self._expr()
            if not self._peek("rp"):
                raise Skip("unbalanced parenthesis")
            self.i += 1
            self.depth -= 1
            return node
        if t.kind == "fn":
            return self._function()
        if self._is_var(t):
            self.i += 1
            return ("var", t.text)
        raise Skip(f"unexpected {t.text!r}")

    def _function(self) -> Node:
        name = self.toks[self.i].text[1:]
        self.i += 1
        self._enter()
        if name == "binom":
            node: Node = ("fn", "binom", self._group(), self._group())
        elif name == "sqrt":
            node = ("fn", "sqrt", self._group())
        elif name == "ln":
            node = ("fn", "ln", self._power())
        else:
            if not self._peek("sub"):
                raise Skip("\\log without a base")  # base 10 or e: the reading is uncertain
            self.i += 1
            base = self._group()
            node = ("fn", "log", base, self._power())
        self.depth -= 1
        return node

    def _group(self) -> Node:
        """A braced argument (`{...}` became `(...)`) or a single number: `\\sqrt{16}`, `\\sqrt 2`, `\\log_2`."""
        if self._peek("num"):
            return self._primary()
        if not self._peek("lp"):
            raise Skip("function argument is not a group")
        return self._primary()


def _number(text: str, limits: ArithmeticLimits) -> Node:
    digits = text.replace(",", "")
    if sum(c.isdigit() for c in digits) > limits.max_digits:
        raise Skip(f"number longer than {limits.max_digits} digits")
    whole, _, frac = digits.partition(".")
    value = Fraction(int(whole or "0") * 10 ** len(frac) + int(frac or "0"), 10 ** len(frac))
    return ("num", value, len(frac))


# ---------------------------------------------------------------- exact evaluation


class Budget:
    """Evaluation operations left for one step."""

    def __init__(self, limits: ArithmeticLimits) -> None:
        self.limits = limits
        self.ops = 0

    def tick(self) -> None:
        self.ops += 1
        if self.ops > self.limits.max_ops:
            raise Abort(f"more than {self.limits.max_ops} arithmetic operations")


@dataclass(frozen=True)
class Reading:
    """How the ambiguous marks are read: `%` as /100 or as a plain number, a glued `!` as a factorial or not."""

    pct_as_hundredth: bool = True
    factorial: bool = True


def evaluate(node: Node, reading: Reading, budget: Budget, env: dict[str, Fraction] | None = None) -> Fraction:
    """Exact value of `node`; raises Skip past a limit and NotRational for a radical or logarithm."""
    budget.tick()
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "var":
        if env is None or node[1] not in env:
            raise Skip(f"unknown {node[1]!r}")
        return env[node[1]]
    if kind == "neg":
        return -evaluate(node[1], reading, budget, env)
    if kind == "pct":
        value = evaluate(node[1], reading, budget, env)
        return value / 100 if reading.pct_as_hundredth else value
    limits = budget.limits
    if kind == "fact":
        value = evaluate(node[1], reading, budget, env)
        if not reading.factorial:
            return value
        if value.denominator != 1 or not 0 <= value <= limits.max_factorial:
            raise Skip(f"factorial of a value that is not an integer within 0..{limits.max_factorial}")
        return Fraction(math.factorial(int(value)))
    if kind == "fn":
        return _function(node, reading, budget, env)
    _, op, left, right = node
    a = evaluate(left, reading, budget, env)
    b = evaluate(right, reading, budget, env)
    if op == "+":
        result = a + b
    elif op == "-":
        result = a - b
    elif op == "*":
        result = a * b
    elif op == "/":
        if b == 0:
            raise Skip("division by zero")
        result = a / b
    else:
        result = _power(a, b, limits)
    _check_bits(result, limits)
    return result


def value_of(toks: list[Tok], limits: ArithmeticLimits, budget: Budget) -> Fraction | None:
    """The exact value of a number expression (no variables), or None when it does not read or evaluate."""
    try:
        return evaluate(Parser(toks, limits).parse(), Reading(), budget)
    except Skip:
        return None


def _power(a: Fraction, b: Fraction, limits: ArithmeticLimits) -> Fraction:
    if 1 < b.denominator <= _MAX_ROOT and a > 0 and abs(b) <= limits.max_exponent:
        root = _exact_root(a, b.denominator)  # 9^{1/2}, 8^{2/3}
        if root is None:
            raise NotRational("a power with a fractional exponent")
        a, b = root, b * b.denominator
    if b.denominator != 1 or abs(b) > limits.max_exponent:
        raise Skip(f"exponent is not an integer within ±{limits.max_exponent}")
    if a == 0 and b < 0:
        raise Skip("division by zero")
    if max(a.numerator.bit_length(), a.denominator.bit_length()) * abs(int(b)) > limits.max_bits:
        raise Skip(f"value above {limits.max_bits} bits")
    return a ** int(b)


def _function(node: Node, reading: Reading, budget: Budget, env: dict[str, Fraction] | None) -> Fraction:
    name, args = node[1], [evaluate(arg, reading, budget, env) for arg in node[2:]]
    limits = budget.limits
    if name == "sqrt":
        if args[0] < 0:
            raise Skip("square root of a negative number")
        root = _exact_sqrt(args[0])
        if root is None:
            raise NotRational("an irrational square root")
        return root
    if name == "binom":
        n, k = args
        if n.denominator != 1 or k.denominator != 1 or not 0 <= n <= limits.max_bits or k < 0:
            raise Skip(f"binomial coefficient outside 0 <= k, n <= {limits.max_bits}")
        return Fraction(math.comb(int(n), int(k)))
    if name == "ln":
        if args[0] <= 0:
            raise Skip("logarithm of a non-positive number")
        if args[0] == 1:
            return Fraction(0)
        raise NotRational("a natural logarithm")
    base, value = args
    if base <= 0 or base == 1 or value <= 0:
        raise Skip("logarithm outside its domain")
    exponent = _rational_log(base, value, limits)
    if exponent is None:
        raise NotRational("an irrational logarithm")
    return exponent


_MAX_ROOT = 6  # 2^{1/4}, 8^{2/3}: roots up to the sixth are read, higher ones are refused


def _exact_root(value: Fraction, degree: int) -> Fraction | None:
    """The rational `degree`-th root of a positive rational, or None; integer arithmetic only."""
    roots = []
    for part in (value.numerator, value.denominator):
        root = _integer_root(part, degree)
        if root**degree != part:
            return None
        roots.append(root)
    return Fraction(roots[0], roots[1])


def _integer_root(n: int, degree: int) -> int:
    """floor(n ** (1/degree)) by Newton's method on integers (floats overflow past ~1e308)."""
    if n < 2:
        return n
    x = 1 << -(-n.bit_length() // degree)  # above the root: Newton then decreases monotonically
    while True:
        y = ((degree - 1) * x + n // x ** (degree - 1)) // degree
        if y >= x:
            return x
        x = y


def _exact_sqrt(value: Fraction) -> Fraction | None:
    num, den = math.isqrt(value.numerator), math.isqrt(value.denominator)
    return Fraction(num, den) if num * num == value.numerator and den * den == value.denominator else None


def _rational_log(base: Fraction, value: Fraction, limits: ArithmeticLimits) -> Fraction | None:
    """p/q with base^(p/q) == value, for q <= 6 and |p/q| <= max_exponent, found by an estimate checked exactly."""
    estimate = _ln(value) / _ln(base)
    for q in range(1, 7):
        p = round(estimate * q)
        if abs(p) > limits.max_exponent * q:
            return None
        if _power(base, Fraction(p), limits) == _power(value, Fraction(q), limits):
            return Fraction(p, q)
    return None


def _ln(value: Fraction) -> float:
    # math.log takes big integers without overflow; value > 0 here
    return math.log(value.numerator) - math.log(value.denominator)


def _check_bits(value: Fraction, limits: ArithmeticLimits) -> None:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > limits.max_bits:
        raise Skip(f"value above {limits.max_bits} bits")


# ---------------------------------------------------------------- tree queries


def has_operator(node: Node) -> bool:
    """Whether a side computes something (not a bare, signed number)."""
    return node[0] in ("bin", "pct", "fact", "fn") or (node[0] == "neg" and has_operator(node[1]))


def has_kind(node: Node, kind: str) -> bool:
    if node[0] == kind:
        return True
    if node[0] in ("neg", "pct", "fact"):
        return has_kind(node[1], kind)
    if node[0] == "bin":
        return has_kind(node[2], kind) or has_kind(node[3], kind)
    if node[0] == "fn":
        return any(has_kind(arg, kind) for arg in node[2:])
    return False


def variables(node: Node) -> frozenset[str]:
    if node[0] == "var":
        return frozenset({node[1]})
    if node[0] in ("neg", "pct", "fact"):
        return variables(node[1])
    if node[0] == "bin":
        return variables(node[2]) | variables(node[3])
    if node[0] == "fn":
        return frozenset().union(*(variables(arg) for arg in node[2:]))
    return frozenset()


def size(node: Node) -> int:
    if node[0] in ("num", "var"):
        return 1
    children = node[2:] if node[0] in ("bin", "fn") else node[1:]
    return 1 + sum(size(child) for child in children if isinstance(child, tuple))


def leftmost_number(node: Node) -> Fraction | None:
    while node[0] == "bin":
        node = node[2]
    return node[1] if node[0] == "num" else None


def literal_decimals(node: Node, reading: Reading) -> int | None:
    """Decimals a single stated number shows (a % read as /100 adds two), or None for an expression."""
    if node[0] == "neg":
        node = node[1]
    extra = 0
    if node[0] == "pct":
        node, extra = node[1], (2 if reading.pct_as_hundredth else 0)
    return node[2] + extra if node[0] == "num" else None


# ---------------------------------------------------------------- comparison (the rounding rule)


def agree(lhs: Fraction, rhs: Fraction, lhs_dec: int | None, rhs_dec: int | None, approx: bool) -> bool:
    """Exact equality, or a stated number that rounds or truncates the other side (docs/verifiers.md)."""
    if lhs == rhs:
        return True
    for exact, stated, dec in ((lhs, rhs, rhs_dec), (rhs, lhs, lhs_dec)):
        if dec is not None and stated_matches(exact, stated, dec, approx):
            return True
    return approx and near(lhs, rhs)


# An estimate marked ≈ is wrong only when it is off by more than a tenth: `2^{10} ≈ 10^3`, `2^{64} ≈ 1.8 \times
# 10^{19}` and `10000/7 ≈ 1400` are how people estimate, not slips.
APPROX_RELATIVE = Fraction(1, 10)


def near(a: Fraction, b: Fraction) -> bool:
    return abs(a - b) <= max(abs(a), abs(b)) * APPROX_RELATIVE


def stated_matches(exact: Fraction, stated: Fraction, decimals: int, approx: bool = False) -> bool:
    """A number shown with `decimals` places stands for `exact` if it rounds it (half a unit) or truncates it
    (cut towards zero), and only when `exact` needs more places than shown; `≈` allows one full unit."""
    unit = Fraction(1, 10**decimals)
    if approx and abs(exact - stated) <= unit:
        return True
    if (exact / unit).denominator == 1:
        return False  # `20 - 13 = 6.00` is exact with these places: nothing was rounded
    if abs(exact - stated) <= unit / 2:
        return True
    truncated = Fraction(math.trunc(exact / unit)) * unit
    return stated == truncated
