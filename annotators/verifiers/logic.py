"""Formal-logic step verifier with Z3 (FoVer, docs/labellers.md §2.1).

A derivation step `fact1 & int2 -> int3: {B}{a}` is correct iff the formulas it cites, together with the
negation of what it concludes, are unsatisfiable. Only the cited formulas go to the solver, and an intermediate
is cited by the formula its own step stated (even if that step was wrong), so every step is judged locally and
errors do not propagate (§2.1). The final step (`__PROVED__` / `__DISPROVED__` / `__UNKNOWN__`) is correct iff it
matches what the facts decide about the hypothesis: PROVED iff facts ⊨ hypothesis, DISPROVED iff facts ⊨
¬hypothesis, UNKNOWN iff neither.

Verdict None (with the reason) for a step that does not parse, cites a formula that does not parse, or whose
check the solver gives up on (per-check timeout, `timeout_ms`). Citing a fact that does not exist, or an
intermediate that no earlier step derived, is a wrong step (False). `verify` never raises: malformed premises make
every step None ("cannot check: ..."), and any failure while checking a step makes that step None with the error.
Steps over `MAX_STEP_CHARS`, formulas over `MAX_FORMULA_CHARS` or deeper than `MAX_DEPTH` do not parse.

The syntax and the problem format are in `domains/logic_language.py`; problems carry `meta["premises"]` (a list of
`{"name": "fact1", "formula": ...}` or a `{name: formula}` dict) and `meta["hypothesis"]`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import z3

from annotators.verifiers.base import StepVerdict, as_config
from domains.logic_language import MAX_STEP_CHARS, Formula, LogicSyntaxError, negate, parse_formula, parse_step
from schemas.records import Problem

__all__ = ["LogicVerifier", "LogicVerifierConfig"]

_SAT, _UNSAT, _UNKNOWN = "sat", "unsat", "unknown"
_MAX_ENCODED = 20_000


@dataclass(frozen=True)
class LogicVerifierConfig:
    """`timeout_ms` bounds each solver check; `cache_size` entailment results are kept (0: no cache)."""

    timeout_ms: int = 2_000
    cache_size: int = 4_096

    def __post_init__(self) -> None:
        if self.timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be positive, got {self.timeout_ms}")
        if self.cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {self.cache_size}")


class _Unparsed:
    """A premise or hypothesis whose text did not parse; citing it gives verdict None."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class LogicVerifier:
    """Z3-backed verifier for proofs in the logic domain; one Z3 context per instance (Z3 is not thread-safe)."""

    name = "logic"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        options = as_config(config)
        known = set(LogicVerifierConfig.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown logic verifier option(s) {unknown}; known: {sorted(known)}")
        self.config = LogicVerifierConfig(**options)
        self.solver_checks = 0  # solver calls made (cache hits excluded), for benchmarks
        self._cache: OrderedDict[tuple[Any, ...], str] = OrderedDict()
        self._ctx = z3.Context()
        self._object = z3.DeclareSort("Object", self._ctx)
        self._symbols: dict[tuple[str, str], Any] = {}
        self._encoded: dict[Formula, Any] = {}

    # ------------------------------------------------------------ public API

    def verify(self, problem: Problem, steps: list[str]) -> list[StepVerdict]:
        """One verdict per step; never raises (a malformed problem or a failing check is verdict None)."""
        meta = problem.meta if isinstance(problem.meta, dict) else {}
        try:
            premises = _premises(meta)
        except _MalformedProblem as exc:
            return [StepVerdict(None, f"cannot check: {exc}") for _ in steps]
        hypothesis = _parse_or_reason(meta.get("hypothesis", ""), "hypothesis")
        intermediates: dict[str, Formula | _Unparsed] = {}
        return [self._verify_step_safely(step, premises, hypothesis, intermediates) for step in steps]

    def entails(self, premises: list[Formula], conclusion: Formula) -> bool | None:
        """premises ⊨ conclusion (UNSAT of premises ∧ ¬conclusion); None if the solver gave up."""
        result = self._check([*premises, negate(conclusion)])
        return None if result == _UNKNOWN else result == _UNSAT

    # ------------------------------------------------------------ steps

    def _verify_step_safely(
        self,
        text: str,
        premises: dict[str, Formula | _Unparsed],
        hypothesis: Formula | _Unparsed,
        intermediates: dict[str, Formula | _Unparsed],
    ) -> StepVerdict:
        try:
            return self._verify_step(text, premises, hypothesis, intermediates)
        except Exception as exc:  # noqa: BLE001 - one step's failure (Z3, a bug) must not stop the other steps or the run
            name = _intermediate_name(text)
            if name:
                intermediates[name] = _Unparsed(f"{name} could not be checked")
            message = " ".join(str(exc).split())[:200]
            return StepVerdict(None, f"verifier error {type(exc).__name__}: {message}")

    def _verify_step(
        self,
        text: str,
        premises: dict[str, Formula | _Unparsed],
        hypothesis: Formula | _Unparsed,
        intermediates: dict[str, Formula | _Unparsed],
    ) -> StepVerdict:
        try:
            step = parse_step(text)
        except LogicSyntaxError as exc:
            # keep the name defined so later citations report the cause, not "no earlier step derived"
            name = _intermediate_name(text)
            if name:
                intermediates[name] = _Unparsed(f"{name} did not parse: {exc}")
            return StepVerdict(None, f"unparseable step: {exc}")
        if step.verdict is not None:
            return self._verify_verdict(step.verdict, premises, hypothesis)

        cited: list[Formula] = []
        for ref in step.premises:
            source = premises if ref.startswith("fact") else intermediates
            if ref not in source:
                what = "a fact of this problem" if ref.startswith("fact") else "derived by an earlier step"
                if step.intermediate:
                    intermediates[step.intermediate] = step.formula  # type: ignore[assignment]
                return StepVerdict(False, f"cites {ref}, which is not {what}")
            formula = source[ref]
            if isinstance(formula, _Unparsed):
                return StepVerdict(None, f"cites {ref}: {formula.reason}")
            cited.append(formula)

        if step.conclusion == "formula":
            assert step.formula is not None
            conclusion = step.formula
            if step.intermediate:
                intermediates[step.intermediate] = conclusion
        elif isinstance(hypothesis, _Unparsed):
            return StepVerdict(None, hypothesis.reason)
        else:
            conclusion = hypothesis if step.conclusion == "hypothesis" else negate(hypothesis)

        refs = " & ".join(step.premises) or "no premises"
        entailed = self.entails(cited, conclusion)
        if entailed is None:
            return StepVerdict(None, f"solver gave up (timeout {self.config.timeout_ms} ms) on {refs}")
        if entailed:
            return StepVerdict(True, f"{refs} entail the conclusion")
        return StepVerdict(False, f"{refs} do not entail the conclusion ({step.conclusion}): a counter-model exists")

    def _verify_verdict(
        self, stated: str, premises: dict[str, Formula | _Unparsed], hypothesis: Formula | _Unparsed
    ) -> StepVerdict:
        if isinstance(hypothesis, _Unparsed):
            return StepVerdict(None, hypothesis.reason)
        facts = [f for f in premises.values() if not isinstance(f, _Unparsed)]
        broken = [name for name, f in premises.items() if isinstance(f, _Unparsed)]
        if broken:
            return StepVerdict(None, f"cannot decide the hypothesis: {', '.join(broken)} did not parse")
        proved = self.entails(facts, hypothesis)
        disproved = self.entails(facts, negate(hypothesis))
        if proved is None or disproved is None:
            return StepVerdict(None, f"solver gave up (timeout {self.config.timeout_ms} ms) deciding the hypothesis")
        if proved and disproved:
            truth = {"PROVED", "DISPROVED"}  # inconsistent facts entail everything
        else:
            truth = {"PROVED"} if proved else {"DISPROVED"} if disproved else {"UNKNOWN"}
        if stated in truth:
            return StepVerdict(True, f"the facts make the hypothesis {stated}")
        return StepVerdict(False, f"stated {stated} but the facts make the hypothesis {'/'.join(sorted(truth))}")

    # ------------------------------------------------------------ solver

    def _check(self, formulas: list[Formula]) -> str:
        key = tuple(formulas)
        if self.config.cache_size and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        result = self._solve(formulas)
        if self.config.cache_size and result != _UNKNOWN:
            self._cache[key] = result
            if len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)
        return result

    def _solve(self, formulas: list[Formula]) -> str:
        """One satisfiability check under the per-check timeout; 'sat', 'unsat' or 'unknown'."""
        self.solver_checks += 1
        solver = z3.Solver(ctx=self._ctx)
        solver.set("timeout", self.config.timeout_ms)
        for formula in formulas:
            solver.add(self._encode(formula))
        result = solver.check()
        if result == z3.unsat:
            return _UNSAT
        return _SAT if result == z3.sat else _UNKNOWN

    def _encode(self, formula: Formula) -> Any:
        """The Z3 term of a closed formula, memoised (facts are re-cited by many checks)."""
        term = self._encoded.get(formula)
        if term is None:
            term = self._to_z3(formula, {})
            if len(self._encoded) >= _MAX_ENCODED:
                self._encoded.clear()
            self._encoded[formula] = term
        return term

    def _to_z3(self, formula: Formula, bound: dict[str, Any]) -> Any:
        # FLD-generator's encoding (§2.1): one sort Object, {A}{a} = A(a), {A} = Bool, (x): = ForAll
        kind = formula[0]
        if kind == "atom":
            _, pred, arg = formula
            if arg is None:
                return self._symbol("prop", pred, lambda: z3.Bool(f"P_{pred}", self._ctx))
            term = bound[arg[1]] if arg[0] == "var" else self._constant(arg[1])
            return self._symbol("pred", pred, lambda: z3.Function(f"F_{pred}", self._object, z3.BoolSort(self._ctx)))(
                term
            )
        if kind == "top":
            return z3.BoolVal(True, self._ctx)
        if kind == "bot":
            return z3.BoolVal(False, self._ctx)
        if kind == "not":
            return z3.Not(self._to_z3(formula[1], bound), self._ctx)
        if kind in ("all", "ex"):
            var = z3.Const(f"v_{formula[1]}_{len(bound)}", self._object)
            body = self._to_z3(formula[2], {**bound, formula[1]: var})
            return z3.ForAll([var], body) if kind == "all" else z3.Exists([var], body)
        left, right = self._to_z3(formula[1], bound), self._to_z3(formula[2], bound)
        if kind == "and":
            return z3.And(left, right)
        if kind == "or":
            return z3.Or(left, right)
        return z3.Implies(left, right)

    def _symbol(self, kind: str, name: str, make: Any) -> Any:
        key = (kind, name)
        if key not in self._symbols:
            self._symbols[key] = make()
        return self._symbols[key]

    def _constant(self, name: str) -> Any:
        return self._symbol("const", name, lambda: z3.Const(f"c_{name}", self._object))


class _MalformedProblem(ValueError):
    """The problem's premises are not in the format of domains/logic_language.py; no step can be checked against
    them."""


def _intermediate_name(text: Any) -> str | None:
    """The `intN` a step defines, read loosely from a step that does not parse (bounded: steps can be huge)."""
    if not isinstance(text, str):
        return None
    name = text[:MAX_STEP_CHARS].split("->", 1)[-1].split(":", 1)[0].strip()
    return name if name.startswith("int") and name[3:].isdigit() else None


def _parse_or_reason(text: Any, what: str) -> Formula | _Unparsed:
    if not isinstance(text, str):
        return _Unparsed(f"{what} did not parse: it is a {type(text).__name__}, not a formula")
    try:
        return parse_formula(text)
    except LogicSyntaxError as exc:
        return _Unparsed(f"{what} did not parse: {exc}")


def _premises(meta: dict[str, Any]) -> dict[str, Formula | _Unparsed]:
    raw = meta.get("premises") or []
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list):
        pairs = []
        for index, premise in enumerate(raw):
            if not (isinstance(premise, dict) and "name" in premise and "formula" in premise):
                raise _MalformedProblem(f"premise {index} is not a {{'name': ..., 'formula': ...}} object")
            pairs.append((premise["name"], premise["formula"]))
    else:
        raise _MalformedProblem(f"meta['premises'] is a {type(raw).__name__}, not a list or an object")
    names = [name for name, _ in pairs]
    if any(not isinstance(name, str) for name in names):
        raise _MalformedProblem("a premise name is not a string")
    return {name: _parse_or_reason(text, name) for name, text in pairs}
