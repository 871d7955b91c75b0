"""Formal-logic domain (FoVer / FLD style): premises, a hypothesis, proofs with citable steps, planted errors.

Why: FoVer labels steps of formal-logic proofs exactly with Z3 (shared/reference/annotators.md §2.1); this module
holds the problem format and a deterministic generator of problems with gold proofs and planted wrong steps.
Pure Python: no solver here (`annotators/verifiers/logic.py` does the checking).

Formula syntax (FLD's, §2.1)::

    formula  := "(x):" formula                 universal quantifier over variable x   (FLD "(x):")
              | "(Ex):" formula                existential quantifier                 (FLD "(Ex):")
              | disj ["->" formula]            implication, right-associative
    disj     := conj {"v" conj}                disjunction ("∨" also accepted)
    conj     := unary {"&" unary}              conjunction ("∧" also accepted)
    unary    := "¬" unary | atom | "(" formula ")" | quantified     ("~" also accepted for "¬")
    atom     := "{A}{a}"                       predicate A of constant a
              | "{A}x"                         predicate A of variable x (bound by a quantifier)
              | "{A}"                          0-ary proposition A
              | "⊤" | "⊥"                      true / false

Predicates are upper-case names in braces (`{A}`, `{AB}`), constants lower-case names in braces (`{a}`, `{aa}`),
variables single lower-case letters other than `v` (`x`, `y`, `z`). A quantifier's scope runs to the end of the
formula or of the enclosing parentheses. Binding order: ¬ tighter than &, & tighter than v, v tighter than ->.

Problems and proofs::

    facts:       fact1: (x): {A}x -> {B}x        fact2: {A}{a}        ...
    hypothesis:  {B}{a}
    proof steps: "fact2 & fact1 -> int1: {B}{a}"     cite facts/intermediates, derive a named intermediate
                 "int1 & fact3 -> hypothesis"        or the hypothesis ("¬hypothesis" for a disproof)
                 "__PROVED__"                        the verdict: __PROVED__ / __DISPROVED__ / __UNKNOWN__

A step is correct iff its cited formulas entail its conclusion (FoVer: cited ∧ ¬conclusion is UNSAT);
intermediates are cited by the formula their step stated, so every step is judged locally (§2.1).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LABELS",
    "Formula",
    "LogicSyntaxError",
    "ProofStep",
    "free_variables",
    "generate_logic_problems",
    "negate",
    "parse_formula",
    "parse_step",
    "render",
]

LABELS = ("PROVED", "DISPROVED", "UNKNOWN")
MAX_FORMULA_CHARS = 2_000
# A step is its citations, an arrow and a formula; longer text is refused before any regex sees it.
MAX_STEP_CHARS = 4_000
# Depth of the formula tree (brackets, ¬, quantifiers and each & / v / -> of a chain): the tree is walked
# recursively (free variables, rendering, the Z3 encoding), so "⊤&⊤&..." 999 long must be refused, not recursed.
MAX_DEPTH = 60

# Formula AST, plain hashable tuples:
#   ("atom", pred, arg)   arg: None (0-ary), ("const", name) or ("var", name)
#   ("not", f) | ("and", f, g) | ("or", f, g) | ("imp", f, g) | ("all", var, f) | ("ex", var, f)
#   ("top",) | ("bot",)
Formula = tuple[Any, ...]


class LogicSyntaxError(ValueError):
    """A formula or a proof step that does not follow the syntax in the module docstring."""


# ---------------------------------------------------------------- parsing

_TOKEN_RE = re.compile(
    r"\s*(?:"
    r"(?P<quant>\((?P<ex>E?)(?P<qvar>[a-uw-z])\)\s*:)"
    r"|(?P<pred>\{[A-Z]+\})"
    r"|(?P<const>\{[a-z]+\})"
    r"|(?P<var>[a-uw-z])(?![A-Za-z0-9_])"
    r"|(?P<not>[¬~])"
    r"|(?P<and>[&∧])"
    r"|(?P<or>(?<![A-Za-z0-9_])v(?![A-Za-z0-9_])|∨)"
    r"|(?P<imp>->|→)"
    r"|(?P<lp>\()"
    r"|(?P<rp>\))"
    r"|(?P<top>⊤)"
    r"|(?P<bot>⊥)"
    r")"
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos, end = 0, len(text.rstrip())
    while pos < end:
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise LogicSyntaxError(f"unexpected {text[pos : pos + 12]!r} at {pos}")
        kind = m.lastgroup if m.lastgroup not in ("ex", "qvar") else "quant"
        if m.group("quant"):
            tokens.append(("quant", ("ex:" if m.group("ex") else "all:") + m.group("qvar")))
        else:
            assert kind is not None
            tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    def parse(self) -> Formula:
        if not self.tokens:
            raise LogicSyntaxError("empty formula")
        f = self._formula()
        if self.i != len(self.tokens):
            raise LogicSyntaxError(f"unexpected {self.tokens[self.i][1]!r}")
        return f

    def _peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise LogicSyntaxError(f"formula nested deeper than {MAX_DEPTH}")

    def _formula(self) -> Formula:
        self._enter()
        if self._peek() == "quant":
            f = self._quantified()
        else:
            f = self._disj()
            if self._peek() == "imp":
                self.i += 1
                f = ("imp", f, self._formula())
        self.depth -= 1
        return f

    def _quantified(self) -> Formula:
        kind, var = self.tokens[self.i][1].split(":")
        self.i += 1
        return ("ex" if kind == "ex" else "all", var, self._formula())

    def _disj(self) -> Formula:
        f = self._conj()
        while self._peek() == "or":
            self.i += 1
            f = ("or", f, self._conj())
        return f

    def _conj(self) -> Formula:
        f = self._unary()
        while self._peek() == "and":
            self.i += 1
            f = ("and", f, self._unary())
        return f

    def _unary(self) -> Formula:
        kind = self._peek()
        if kind == "not":
            self._enter()
            self.i += 1
            f = ("not", self._unary())
            self.depth -= 1
            return f
        if kind == "quant":
            return self._quantified()
        if kind == "lp":
            self.i += 1
            f = self._formula()
            if self._peek() != "rp":
                raise LogicSyntaxError("missing ')'")
            self.i += 1
            return f
        if kind in ("top", "bot"):
            self.i += 1
            return (kind,)
        if kind == "pred":
            pred = self.tokens[self.i][1][1:-1]
            self.i += 1
            if self._peek() == "const":
                self.i += 1
                return ("atom", pred, ("const", self.tokens[self.i - 1][1][1:-1]))
            if self._peek() == "var":
                self.i += 1
                return ("atom", pred, ("var", self.tokens[self.i - 1][1]))
            return ("atom", pred, None)
        found = self.tokens[self.i][1] if self.i < len(self.tokens) else "end of formula"
        raise LogicSyntaxError(f"expected a formula, found {found!r}")


def parse_formula(text: str) -> Formula:
    """Parse one closed formula in the syntax above; raises LogicSyntaxError (never evaluates anything)."""
    if not isinstance(text, str):
        raise LogicSyntaxError(f"a formula is text, not a {type(text).__name__}")
    if len(text) > MAX_FORMULA_CHARS:
        raise LogicSyntaxError(f"formula longer than {MAX_FORMULA_CHARS} characters")
    formula = _Parser(_tokenize(text)).parse()
    if _tree_depth(formula) > MAX_DEPTH:
        raise LogicSyntaxError(f"formula nested deeper than {MAX_DEPTH} (each & / v / -> of a chain is a level)")
    free = free_variables(formula)
    if free:
        raise LogicSyntaxError(f"free variable(s) {sorted(free)} not bound by a quantifier")
    return formula


def _tree_depth(formula: Formula) -> int:
    """Depth of a formula tree, walked with an explicit stack (the tree may be deeper than the recursion limit)."""
    deepest, stack = 0, [(formula, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        kind = node[0]
        if kind == "not":
            stack.append((node[1], depth + 1))
        elif kind in ("all", "ex"):
            stack.append((node[2], depth + 1))
        elif kind in ("and", "or", "imp"):
            stack += [(node[1], depth + 1), (node[2], depth + 1)]
    return deepest


def free_variables(formula: Formula, bound: frozenset[str] = frozenset()) -> set[str]:
    """Variables used outside the scope of a quantifier that binds them."""
    kind = formula[0]
    if kind == "atom":
        arg = formula[2]
        return {arg[1]} if arg is not None and arg[0] == "var" and arg[1] not in bound else set()
    if kind in ("all", "ex"):
        return free_variables(formula[2], bound | {formula[1]})
    if kind == "not":
        return free_variables(formula[1], bound)
    if kind in ("and", "or", "imp"):
        return free_variables(formula[1], bound) | free_variables(formula[2], bound)
    return set()


# ---------------------------------------------------------------- rendering

_BINARY = {"and": "&", "or": "v", "imp": "->"}


def render(formula: Formula) -> str:
    """The canonical text of a formula; `parse_formula(render(f)) == f`."""
    kind = formula[0]
    if kind == "atom":
        _, pred, arg = formula
        if arg is None:
            return f"{{{pred}}}"
        return f"{{{pred}}}{{{arg[1]}}}" if arg[0] == "const" else f"{{{pred}}}{arg[1]}"
    if kind == "top":
        return "⊤"
    if kind == "bot":
        return "⊥"
    if kind == "not":
        return "¬" + _wrapped(formula[1])
    if kind in ("all", "ex"):
        return f"({'E' if kind == 'ex' else ''}{formula[1]}): {render(formula[2])}"
    left, right = formula[1], formula[2]
    # `->` binds loosest, so a conjunction or disjunction on its right needs no brackets
    right_text = render(right) if kind == "imp" and right[0] in ("and", "or") else _wrapped(right)
    return f"{_wrapped(left)} {_BINARY[kind]} {right_text}"


def _wrapped(formula: Formula) -> str:
    text = render(formula)
    return f"({text})" if formula[0] in ("and", "or", "imp", "all", "ex") else text


def negate(formula: Formula) -> Formula:
    """¬f, with a double negation removed (the hypothesis of a disproof, §2.1)."""
    return formula[1] if formula[0] == "not" else ("not", formula)


# ---------------------------------------------------------------- proof steps

# Applied to the stripped step, so no pattern has a `\s*` run on each side of an optional piece at the end (the
# old `.+?\s*;?\s*$` backtracked cubically over a step padded with spaces); every `\s*` here sits between two
# fixed tokens and is tried once per start.
_REF = r"(?:fact\d+|int\d+)"
_STEP_RE = re.compile(rf"(?P<premises>void|{_REF}(?:\s*&\s*{_REF})*)\s*->(?P<conclusion>.*)", re.S)
_INT_RE = re.compile(r"(?P<name>int\d+)\s*:(?P<formula>.*)", re.S)
_VERDICT_RE = re.compile(
    r"(?:__(?P<a>PROVED|DISPROVED|UNKNOWN)__|(?:the final answer is|\$?proof_label\$?\s*:)\s*(?P<b>PROVED|DISPROVED|UNKNOWN))"
    r"(?:\s*[.;])?",
    re.I,
)


@dataclass(frozen=True)
class ProofStep:
    """One parsed proof step: a derivation (`premises -> conclusion`) or the final verdict."""

    premises: tuple[str, ...] = ()
    conclusion: str = ""  # "hypothesis", "¬hypothesis" or "formula"
    intermediate: str | None = None  # the "intN" this step defines
    formula: Formula | None = None  # the stated formula when conclusion == "formula"
    verdict: str | None = None  # PROVED / DISPROVED / UNKNOWN for the final step


def parse_step(text: str) -> ProofStep:
    """Parse a proof step; raises LogicSyntaxError with the reason (a step over MAX_STEP_CHARS is not parsed)."""
    if not isinstance(text, str):
        raise LogicSyntaxError(f"a proof step is text, not a {type(text).__name__}")
    if len(text) > MAX_STEP_CHARS:
        raise LogicSyntaxError(f"step longer than {MAX_STEP_CHARS} characters ({len(text)})")
    text = text.strip()
    verdict = _VERDICT_RE.fullmatch(text)
    if verdict:
        return ProofStep(verdict=(verdict.group("a") or verdict.group("b")).upper())
    m = _STEP_RE.fullmatch(text)
    conclusion = _strip_terminator(m.group("conclusion")) if m else ""
    if not conclusion:
        raise LogicSyntaxError(f"not a proof step: {text[:80]!r}")
    premises = tuple(p.strip() for p in m.group("premises").split("&") if p.strip() != "void")
    if conclusion == "hypothesis":
        return ProofStep(premises, "hypothesis")
    if conclusion[0] in "¬~" and conclusion[1:].lstrip() == "hypothesis":
        return ProofStep(premises, "¬hypothesis")
    named = _INT_RE.fullmatch(conclusion)
    name = named.group("name") if named else None
    formula = parse_formula(named.group("formula") if named else conclusion)
    return ProofStep(premises, "formula", name, formula)


def _strip_terminator(conclusion: str) -> str:
    """The conclusion without surrounding space and one trailing `;` (what `.+?\\s*;?\\s*$` used to leave)."""
    conclusion = conclusion.strip()
    if conclusion.endswith(";") and len(conclusion) > 1:
        conclusion = conclusion[:-1].rstrip()
    return conclusion


# ---------------------------------------------------------------- generator

_CONSTANTS = tuple("abcdefghijklmnopqrstu")


def _pred_names() -> list[str]:
    single = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    return single + [a + b for a in single for b in single]


_PRED_NAMES = _pred_names()


def _atom(pred: str, const: str | None) -> Formula:
    return ("atom", pred, ("const", const) if const is not None else None)


def _univ(antecedent: Formula, consequent: Formula) -> Formula:
    return ("all", "x", ("imp", antecedent, consequent))


def _x(pred: str) -> Formula:
    return ("atom", pred, ("var", "x"))


class _Builder:
    """Builds one problem: facts, a chain of derivation steps, a hypothesis and the gold proof."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.preds = rng.sample(_PRED_NAMES[:60], 24)  # fresh names per problem, used in order
        self.consts = rng.sample(_CONSTANTS, 4)
        self.facts: list[Formula] = []
        self.steps: list[dict[str, Any]] = []  # {"cites": [("fact", i) | ("int", k)], "formula": f, "rule": r}

    def fresh_pred(self) -> str:
        return self.preds.pop()

    def fact(self, formula: Formula) -> tuple[str, int]:
        self.facts.append(formula)
        return ("fact", len(self.facts) - 1)

    def derive(self, cites: list[tuple[str, int]], formula: Formula, rule: str) -> tuple[str, int]:
        self.steps.append({"cites": cites, "formula": formula, "rule": rule})
        return ("int", len(self.steps) - 1)

    def build_chain(self, length: int) -> tuple[Formula, tuple[str, int]]:
        c = self.consts[0]
        start = self.rng.choice(("pos", "pos", "neg", "prop"))
        if start == "prop":
            current: Formula = _atom(self.fresh_pred(), None)
        elif start == "neg":
            current = ("not", _atom(self.fresh_pred(), c))
        else:
            current = _atom(self.fresh_pred(), c)
        ref = self.fact(current)
        for _ in range(length):
            current, ref = self.apply_rule(current, ref, c)
        return current, ref

    def apply_rule(self, current: Formula, ref: tuple[str, int], c: str) -> tuple[Formula, tuple[str, int]]:
        rng = self.rng
        if current[0] == "and":  # conjunction elimination, keeping the conjunct that is not a bare fact
            parts = [f for f in (current[1], current[2]) if f not in self.facts] or [current[1], current[2]]
            part = rng.choice(parts)
            return part, self.derive([ref], part, "conj_elim")
        if current[0] == "not":
            inner = current[1]
            if inner[2] is None:  # ¬{P}: modus tollens with {Q} -> {P}
                q = _atom(self.fresh_pred(), None)
                rule = self.fact(("imp", q, inner))
                new = ("not", q)
                return new, self.derive(self._order([ref, rule]), new, "mt")
            if rng.random() < 0.5:  # modus tollens: (x): Q x -> P x, ¬P(c) |- ¬Q(c)
                q = self.fresh_pred()
                rule = self.fact(_univ(_x(q), _x(inner[1])))
                new = ("not", _atom(q, c))
                return new, self.derive(self._order([ref, rule]), new, "mt")
            # disjunctive syllogism: P(c) v R(c), ¬P(c) |- R(c)
            r = _atom(self.fresh_pred(), c)
            disj = self.fact(("or", inner, r))
            return r, self.derive(self._order([ref, disj]), r, "ds")
        if current[2] is None:  # 0-ary: {P} -> {Q} (sometimes a constant-level conclusion)
            q = _atom(self.fresh_pred(), c if rng.random() < 0.5 else None)
            rule = self.fact(("imp", current, q))
            return q, self.derive(self._order([ref, rule]), q, "mp_prop")
        p = current[1]
        choice = rng.choice(("mp_univ", "mp_univ", "mp_conj", "conj_intro", "neg_univ"))
        if choice == "mp_univ":  # (x): P x -> Q x, P(c) |- Q(c)
            q = self.fresh_pred()
            rule = self.fact(_univ(_x(p), _x(q)))
            new = _atom(q, c)
            return new, self.derive(self._order([ref, rule]), new, "mp_univ")
        if choice == "mp_conj":  # (x): (P x & R x) -> Q x, P(c), R(c) |- Q(c)
            r, q = self.fresh_pred(), self.fresh_pred()
            aux = self.fact(_atom(r, c))
            rule = self.fact(_univ(("and", _x(p), _x(r)), _x(q)))
            new = _atom(q, c)
            return new, self.derive(self._order([ref, aux, rule]), new, "mp_conj")
        if choice == "neg_univ":  # (x): P x -> ¬Q x, P(c) |- ¬Q(c)
            q = self.fresh_pred()
            rule = self.fact(_univ(_x(p), ("not", _x(q))))
            new = ("not", _atom(q, c))
            return new, self.derive(self._order([ref, rule]), new, "mp_univ")
        r = _atom(self.fresh_pred(), c)  # conjunction introduction
        aux = self.fact(r)
        new = ("and", current, r) if rng.random() < 0.5 else ("and", r, current)
        return new, self.derive(self._order([ref, aux]), new, "conj_intro")

    def _order(self, cites: list[tuple[str, int]]) -> list[tuple[str, int]]:
        return self.rng.sample(cites, len(cites))

    def distractors(self, count: int) -> None:
        for _ in range(count):
            a, b = self.fresh_pred(), self.fresh_pred()
            const = self.rng.choice(self.consts)
            kind = self.rng.randrange(3)
            if kind == 0:
                self.fact(_univ(_x(a), _x(b)))
            elif kind == 1:
                self.fact(_atom(a, const))
            else:
                self.fact(("or", _atom(a, const), ("not", _atom(b, const))))


def _ref_name(ref: tuple[str, int], fact_numbers: dict[int, int]) -> str:
    kind, index = ref
    return f"fact{fact_numbers[index]}" if kind == "fact" else f"int{index + 1}"


def _render_proof(
    steps: list[dict[str, Any]], fact_numbers: dict[int, int], label: str, final_conclusion: str | None
) -> list[str]:
    lines = []
    for k, step in enumerate(steps):
        cites = " & ".join(_ref_name(ref, fact_numbers) for ref in step["cites"]) or "void"
        if k == len(steps) - 1 and final_conclusion is not None:
            lines.append(f"{cites} -> {final_conclusion}")
        else:
            lines.append(f"{cites} -> int{k + 1}: {render(step['formula'])}")
    lines.append(f"__{label}__")
    return lines


def _plant_error(
    builder: _Builder,
    steps: list[dict[str, Any]],
    lines: list[str],
    index: int,
    fact_numbers: dict[int, int],
    label: str,
    final_conclusion: str | None,
) -> tuple[list[str], str]:
    """Corrupt step `index` so that its cited formulas no longer entail what it states."""
    rng = builder.rng
    lines = list(lines)
    if index == len(lines) - 1:
        wrong = rng.choice([other for other in LABELS if other != label])
        lines[index] = f"__{wrong}__"
        return lines, "wrong_verdict"
    step = steps[index]
    is_final_derivation = index == len(steps) - 1 and final_conclusion is not None
    kinds = ["negated_conclusion"]
    if len(step["cites"]) > 1:
        kinds.append("dropped_premise")
    if not is_final_derivation and step["formula"][0] in ("atom", "not") and _constant_of(step["formula"]):
        kinds += ["wrong_constant", "wrong_predicate"]
    kind = rng.choice(kinds)
    cites = list(step["cites"])
    formula = step["formula"]
    if kind == "dropped_premise":
        cites.pop(rng.randrange(len(cites)))
    elif kind == "wrong_constant":
        other = rng.choice([c for c in builder.consts if c != _constant_of(formula)])
        formula = _with_constant(formula, other)
    elif kind == "wrong_predicate":
        formula = _with_predicate(formula, builder.fresh_pred())
    cite_text = " & ".join(_ref_name(ref, fact_numbers) for ref in cites)
    if is_final_derivation:
        assert final_conclusion is not None
        conclusion = final_conclusion
        if kind == "negated_conclusion":
            conclusion = "¬hypothesis" if final_conclusion == "hypothesis" else "hypothesis"
        lines[index] = f"{cite_text} -> {conclusion}"
    else:
        if kind == "negated_conclusion":
            formula = negate(formula)
        lines[index] = f"{cite_text} -> int{index + 1}: {render(formula)}"
    return lines, kind


def _constant_of(formula: Formula) -> str | None:
    atom = formula[1] if formula[0] == "not" else formula
    return atom[2][1] if atom[0] == "atom" and atom[2] is not None else None


def _with_constant(formula: Formula, const: str) -> Formula:
    if formula[0] == "not":
        return ("not", _with_constant(formula[1], const))
    return ("atom", formula[1], ("const", const))


def _with_predicate(formula: Formula, pred: str) -> Formula:
    if formula[0] == "not":
        return ("not", _with_predicate(formula[1], pred))
    return ("atom", pred, formula[2])


def _question(premises: list[dict[str, str]], hypothesis: str) -> str:
    facts = "\n".join(f"{p['name']}: {p['formula']}" for p in premises)
    return (
        "Based on the facts, decide whether the hypothesis is PROVED, DISPROVED or UNKNOWN.\n\n"
        f"$facts$:\n{facts}\n\n$hypothesis$: {hypothesis}"
    )


def generate_logic_problems(
    n: int,
    seed: int,
    wrong_step_rate: float = 0.3,
    min_steps: int = 2,
    max_steps: int = 4,
) -> list[dict[str, Any]]:
    """`n` problems with gold proofs; a share `wrong_step_rate` of them carries one planted wrong step.

    Deterministic in (n, seed, options); problem i depends only on (seed, i), so a larger n extends the list.
    `meta["solution_steps"]` is the proof to label (with the planted error, if any) and
    `meta["planted_error_index"]` the index of its first wrong step (-1 if none); steps after it are unlabelled
    (a corrupted intermediate may make later citing steps wrong as well).
    """
    if not 0.0 <= wrong_step_rate <= 1.0:
        raise ValueError(f"wrong_step_rate must be within [0, 1], got {wrong_step_rate}")
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
    return [_problem(seed, i, wrong_step_rate, min_steps, max_steps) for i in range(n)]


def _problem(seed: int, i: int, wrong_step_rate: float, min_steps: int, max_steps: int) -> dict[str, Any]:
    rng = random.Random(f"stepforge-logic:{seed}:{i}")
    builder = _Builder(rng)
    label = rng.choice(LABELS)
    derived, _ = builder.build_chain(rng.randint(min_steps, max_steps))
    if label == "PROVED":
        hypothesis, final_conclusion = derived, "hypothesis"
    elif label == "DISPROVED":
        hypothesis, final_conclusion = negate(derived), "¬hypothesis"
    else:  # a fresh predicate the facts say nothing about
        hypothesis = _atom(builder.fresh_pred(), builder.consts[0])
        if rng.random() < 0.5:
            hypothesis = ("not", hypothesis)
        final_conclusion = None
    builder.distractors(rng.randint(1, 3))

    order = rng.sample(range(len(builder.facts)), len(builder.facts))
    fact_numbers = {index: position + 1 for position, index in enumerate(order)}
    premises = [{"name": f"fact{fact_numbers[k]}", "formula": render(f)} for k, f in enumerate(builder.facts)]
    premises.sort(key=lambda p: int(p["name"][4:]))
    gold = _render_proof(builder.steps, fact_numbers, label, final_conclusion)

    steps, planted, kind = gold, -1, None
    if rng.random() < wrong_step_rate:
        planted = rng.randrange(len(gold))
        steps, kind = _plant_error(builder, builder.steps, gold, planted, fact_numbers, label, final_conclusion)

    hypothesis_text = render(hypothesis)
    return {
        "problem_id": f"logic-{seed}-{i}",
        "question": _question(premises, hypothesis_text),
        "answer": label,
        "domain": "logic",
        "source": "stepforge-logic-generator",
        "meta": {
            "premises": premises,
            "hypothesis": hypothesis_text,
            "solution_steps": steps,
            "gold_solution_steps": gold,
            "planted_error_index": planted,
            "planted_error_kind": kind,
            "rules": [step["rule"] for step in builder.steps],
        },
    }
