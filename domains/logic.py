"""Formal-logic domain (FoVer / FLD style): premises, a hypothesis, proofs with citable steps, planted errors.

Why: FoVer labels steps of formal-logic proofs exactly with Z3 (docs/labellers.md §2.1); this module
is a deterministic generator of problems with gold proofs and planted wrong steps. Their language (formula syntax,
the problem and proof-step format, parser and renderer) is `domains.logic_language`.
Pure Python: no solver here (`annotators/verifiers/logic.py` does the checking).
"""

from __future__ import annotations

import random
from typing import Any

from domains.logic_language import LABELS, Formula, negate, render

__all__ = ["generate_logic_problems"]

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
