"""Synthetic step-by-step arithmetic domain: problems, gold solutions and exact step checking.

Expressions use the operators ``+``, ``-`` and ``*`` over non-negative integer literals, e.g. ``9*9+24-7``.

Order of evaluation (one operation per step, the only order counted as correct): the usual
precedence, applied term by term from left to right. The expression is a sum/difference of terms,
each term a product of literals (``9*9+24-7`` has terms ``9*9``, ``24``, ``7``).

1. The first term is computed (its multiplications left to right, ``a*b*c`` as ``(a*b)*c``) and
   becomes the running total.
2. Each following term is computed the same way right when it is reached, then added to or
   subtracted from the running total (``running<op>term``).

So the operands are consumed in the order they appear: ``24-12+9*6`` is ``24-12=12``,
``9*6=54``, ``12+54=66``.

Each step is written ``Step k: a<op>b=c`` where ``a`` and ``b`` are the operands the rule above picks
(literals from the question or the result of an earlier step) and ``c`` is the result. The solution
ends with `` Answer: N``. Example for ``9*9+24-7``::

     Step 1: 9*9=81 Step 2: 81+24=105 Step 3: 105-7=98 Answer: 98

Generated problems (``generate_problems``) have 2..6 operations by default, operands 1..50 (factors of
``*`` 2..9, never two ``*`` in a row) and every intermediate result in 0..99.

Everything here is parsed with regexes and computed with int arithmetic; nothing is ever ``eval``-ed.
"""

from __future__ import annotations

import random
import re

__all__ = [
    "Operation",
    "canonical_steps",
    "evaluate",
    "exact_first_error",
    "format_step",
    "generate_problems",
    "gold_solution",
    "parse_expression",
    "question_for",
    "split_steps",
    "step_truth",
]

# (left operand, operator, right operand, result) of one step.
Operation = tuple[int, str, int, int]

_EXPR_TOKEN_RE = re.compile(r"\s*(?:(\d+)|([+\-*]))")
# A step: optional "Step k:" label, "a op b = c", optional trailing "Answer: n".
_STEP_RE = re.compile(
    r"^\s*(?:Step\s*(?P<label>\d+)\s*:)?\s*(?P<a>\d+)\s*(?P<op>[+\-*])\s*(?P<b>\d+)\s*=\s*(?P<c>-?\d+)"
    r"\s*(?:Answer\s*:\s*(?P<answer>-?\d+))?\s*\.?\s*$"
)
_ANSWER_RE = re.compile(r"Answer\s*:")
_STEP_SPLIT_RE = re.compile(r"(?=Step\s*\d+\s*:)")

# Generation knobs; intermediate results stay in [0, _MAX_VALUE] so the tiny model sees moderate numbers.
_MAX_ADD_OPERAND = 50
_MIN_FACTOR, _MAX_FACTOR = 2, 9
_MAX_VALUE = 99  # all numbers stay <= 2 digits: learnable by a 3M model on one CPU core
_P_MUL = 0.3


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"unknown operator {op!r}")


def parse_expression(expression: str) -> tuple[list[int], list[str]]:
    """Split ``"9*9+24-7"`` into operands ``[9, 9, 24, 7]`` and operators ``["*", "+", "-"]``.

    Raises ``ValueError`` on anything that is not ``int (op int)*``.
    """
    # tolerate the question form "Q: 9*9+24-7=?"
    text = expression.strip().removeprefix("Q:").rstrip("=?").strip()
    operands: list[int] = []
    operators: list[str] = []
    pos = 0
    while pos < len(text):
        m = _EXPR_TOKEN_RE.match(text, pos)
        if m is None:
            raise ValueError(f"cannot parse expression {expression!r} at {pos}")
        number, op = m.group(1), m.group(2)
        expect_number = len(operands) == len(operators)
        if number is not None and expect_number:
            operands.append(int(number))
        elif op is not None and not expect_number:
            operators.append(op)
        else:
            raise ValueError(f"malformed expression {expression!r}")
        pos = m.end()
    if not operands or len(operands) != len(operators) + 1:
        raise ValueError(f"malformed expression {expression!r}")
    return operands, operators


def canonical_steps(expression: str) -> list[Operation]:
    """The one correct sequence of operations for ``expression`` under the documented order."""
    values, ops = parse_expression(expression)
    terms: list[tuple[str, list[int]]] = [("+", [values[0]])]  # (sign, factors)
    for op, v in zip(ops, values[1:], strict=True):
        if op == "*":
            terms[-1][1].append(v)
        else:
            terms.append((op, [v]))
    steps: list[Operation] = []
    total: int | None = None
    for sign, factors in terms:
        term = factors[0]
        for f in factors[1:]:  # the term's own multiplications, left to right
            steps.append((term, "*", f, term * f))
            term *= f
        if total is None:
            total = term
        else:  # then fold it into the running total
            c = _apply(total, sign, term)
            steps.append((total, sign, term, c))
            total = c
    return steps


def evaluate(expression: str) -> int:
    """Value of ``expression`` (the result of its last canonical step)."""
    steps = canonical_steps(expression)
    return steps[-1][3] if steps else parse_expression(expression)[0][0]


def format_step(index: int, op: Operation) -> str:
    """``format_step(1, (9, "*", 9, 81))`` -> ``"Step 1: 9*9=81"`` (index is 1-based)."""
    a, sym, b, c = op
    return f"Step {index}: {a}{sym}{b}={c}"


def question_for(expression: str) -> str:
    """The prompt the model sees: ``"Q: 9*9+24-7=?"``."""
    return f"Q: {expression}=?"


def gold_solution(expression: str) -> str:
    """The exact text the model is trained to generate after ``question_for(expression)``."""
    steps = canonical_steps(expression)
    body = "".join(" " + format_step(i, s) for i, s in enumerate(steps, start=1))
    return f"{body} Answer: {evaluate(expression)}"


def split_steps(solution: str) -> list[str]:
    """Split generated text into step strings at each ``Step k:``; the answer stays on the last step.

    Text before the first ``Step`` label (if any, and not blank) becomes its own (wrong) step.
    """
    parts = [p.strip() for p in _STEP_SPLIT_RE.split(solution)]
    return [p for p in parts if p]


def _parse_step(text: str) -> tuple[int | None, Operation, int | None] | None:
    m = _STEP_RE.match(text)
    if m is None:
        return None
    label = int(m["label"]) if m["label"] is not None else None
    answer = int(m["answer"]) if m["answer"] is not None else None
    return label, (int(m["a"]), m["op"], int(m["b"]), int(m["c"])), answer


def _same_operation(claimed: Operation, expected: Operation) -> bool:
    a, op, b, c = claimed
    ea, eop, eb, ec = expected
    if op != eop or c != ec:
        return False
    if (a, b) == (ea, eb):
        return True
    # a swapped commutative operand pair is still correct
    return op in "+*" and (b, a) == (ea, eb)


def exact_first_error(expression: str, steps: list[str]) -> int:
    """0-based index of the first wrong step of a solution to ``expression``, or -1 if it is fully right.

    Step ``i`` is wrong when (all earlier steps being right) it does not parse as ``[Step i+1:] a op b=c``,
    carries a label other than ``i+1``, is not the canonical operation ``i`` (wrong operands, operator or
    order; ``a op b`` swapped for ``+``/``*`` is accepted), claims a wrong result ``c``, or is a step beyond
    the last one needed. The answer is judged on the last step: it must carry ``Answer: N`` equal to the
    true value, and there must be no missing steps, otherwise the last step is the first error. An
    ``Answer`` on an earlier step makes that step wrong. An empty list returns 0.
    """
    expected = canonical_steps(expression)
    if not steps:
        return 0
    for i, text in enumerate(steps):
        parsed = _parse_step(text)
        if parsed is None or i >= len(expected):
            return i
        label, op, answer = parsed
        if label is not None and label != i + 1:
            return i
        if not _same_operation(op, expected[i]):
            return i
        if i < len(steps) - 1:
            if answer is not None:
                return i  # premature answer
        elif len(steps) < len(expected) or answer != expected[-1][3]:
            return i  # last step: missing steps, or answer absent or wrong
    return -1


def step_truth(expression: str, steps: list[str]) -> list[bool]:
    """Per-step labels under the first-error convention: True before the first error, False from it on."""
    first = exact_first_error(expression, steps)
    if first < 0:
        return [True] * len(steps)
    return [i < first for i in range(len(steps))]


def _random_expression(rng: random.Random, num_steps: int) -> str | None:
    ops: list[str] = []
    for _ in range(num_steps):
        # no two '*' in a row, so every product is of two single-digit literals
        if ops and ops[-1] == "*":
            ops.append(rng.choice("+-"))
        else:
            ops.append("*" if rng.random() < _P_MUL else rng.choice("+-"))
    factor_positions = {i for i, o in enumerate(ops) if o == "*"} | {i + 1 for i, o in enumerate(ops) if o == "*"}
    operands = [
        rng.randint(_MIN_FACTOR, _MAX_FACTOR) if i in factor_positions else rng.randint(1, _MAX_ADD_OPERAND)
        for i in range(num_steps + 1)
    ]
    expression = str(operands[0]) + "".join(f"{o}{v}" for o, v in zip(ops, operands[1:], strict=True))
    if any(not 0 <= c <= _MAX_VALUE for *_, c in canonical_steps(expression)):
        return None  # reject negative or oversized intermediate results
    return expression


def generate_problems(n: int, seed: int, min_steps: int = 2, max_steps: int = 6) -> list[dict]:
    """``n`` deterministic problems with ``min_steps..max_steps`` operations (chain length uniform).

    Each item: ``{"problem_id", "question", "answer", "num_steps", "expression"}``; the same
    ``(n, seed, min_steps, max_steps)`` always gives the same list.
    """
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
    rng = random.Random(seed)
    problems: list[dict] = []
    for i in range(n):
        num_steps = rng.randint(min_steps, max_steps)
        expression = None
        while expression is None:  # rejection sampling; succeeds within a few tries
            expression = _random_expression(rng, num_steps)
        problems.append(
            {
                "problem_id": f"arith-{seed}-{i}",
                "question": question_for(expression),
                "answer": str(evaluate(expression)),
                "num_steps": num_steps,
                "expression": expression,
            }
        )
    return problems
