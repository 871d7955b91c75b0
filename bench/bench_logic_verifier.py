"""Benchmark the Z3 logic verifier on generated problems with planted wrong steps.

Prints the Z3 satisfiability checks per second (one core, cache off), and how well the verifier recovers the
planted errors: per problem, whether its first flagged step is the planted one (-1 for a clean proof); per step,
the agreement with the known labels (steps before the planted error correct, the planted step wrong); and
that every gold proof verifies.

    .venv/bin/python bench/bench_logic_verifier.py [--problems 300] [--seed 0] [--wrong-step-rate 0.5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotators.verifiers.base import first_flagged  # noqa: E402
from annotators.verifiers.logic import LogicVerifier  # noqa: E402
from domains.logic import generate_logic_problems  # noqa: E402
from schemas.records import Problem  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wrong-step-rate", type=float, default=0.5)
    args = parser.parse_args(argv)

    rows = generate_logic_problems(args.problems, seed=args.seed, wrong_step_rate=args.wrong_step_rate)
    verifier = LogicVerifier({"cache_size": 0})  # every check reaches the solver
    first_error_hits = steps_agree = steps_labelled = gold_ok = none_verdicts = 0
    misses: Counter[str] = Counter()
    start = time.perf_counter()
    for row in rows:
        problem = Problem.from_dict(row)
        meta = row["meta"]
        verdicts = verifier.verify(problem, meta["solution_steps"])
        gold = verifier.verify(problem, meta["gold_solution_steps"])
        gold_ok += all(v.verdict is True for v in gold)
        planted = meta["planted_error_index"]
        none_verdicts += sum(v.verdict is None for v in verdicts)
        if first_flagged(verdicts) == planted:
            first_error_hits += 1
        else:
            misses[meta["planted_error_kind"] or "clean"] += 1
        labelled = range(planted + 1) if planted >= 0 else range(len(verdicts))
        for index in labelled:
            steps_labelled += 1
            steps_agree += verdicts[index].verdict is (index != planted)
    elapsed = time.perf_counter() - start

    n = len(rows)
    planted_count = sum(r["meta"]["planted_error_index"] >= 0 for r in rows)
    print(f"logic problems: {n} (seed {args.seed}), {planted_count} with a planted wrong step")
    print(f"  first flagged step == planted step (or none flagged on a clean proof): {first_error_hits}/{n}")
    print(f"  labelled steps agreeing with the planted labels: {steps_agree}/{steps_labelled}")
    print(f"  gold proofs fully verified: {gold_ok}/{n}; None verdicts: {none_verdicts}")
    if misses:
        print(f"  misses by kind: {dict(misses)}")
    kinds = Counter(r["meta"]["planted_error_kind"] for r in rows if r["meta"]["planted_error_kind"])
    print(f"  planted kinds: {dict(kinds)}")
    print(
        f"Z3: {verifier.solver_checks} satisfiability checks in {elapsed:.2f} s = "
        f"{verifier.solver_checks / elapsed:.0f} checks/s on one core (parsing and encoding included)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
