"""How many wrong-rated PRM800K steps could any in-step claim checker catch? A hand audit, reproducible.

Draws a fixed sample of steps rated -1 in PRM800K phase 1 (100 from the even half with seed 7, 100 from the odd half
with seed 8: the halves of bench_arithmetic_verifier.py), joins each with the class a person gave it in
bench/audits/prm800k_wrong_steps.tsv, and prints how many fall in each class and how many of those the claim
verifier flags. The classes (docs/verifiers.md, "What the verifier can reach"):

    arith      a false computation between numbers, stated in the step
    modular    a false modular or number-theory fact, stated in the step
    identity   a false algebraic identity or derivation, stated within the step
    words      a false numeric fact stated in words ("4 is a multiple of 3")
    earlier    a result whose truth depends on earlier steps (an equation solved, an expansion, a derivative)
    reasoning  a wrong approach, setup, reading of the problem, or a claim that is not a computation

The first four are what a checker that reads one step could reach; `earlier` needs the solution's context.

    OMP_NUM_THREADS=1 .venv/bin/python bench/audit_wrong_steps.py [--show]
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotators.verifiers.arithmetic import extract_claims  # noqa: E402
from bench.bench_arithmetic_verifier import (  # noqa: E402
    PRM800K,
    flag_of,
    half_of,
    prm800k_solutions,
    rated_completions,
    require_data,
)

AUDIT = Path(__file__).resolve().parent / "audits" / "prm800k_wrong_steps.tsv"
SAMPLES = (("even", 7, 100), ("odd", 8, 100))  # (half, seed, size): fixed before the audit was read
IN_STEP = ("arith", "modular", "identity", "words")
CLASSES = (*IN_STEP, "earlier", "reasoning")


def wrong_steps(problems: list[list[dict]]) -> list[dict]:
    """Every step rated -1, in file order, with the step before it (the text the labeller continued from)."""
    return [
        {"key": f"{p}/{r}/{s}/{c}", "text": completion["text"], "previous": previous}
        for p, r, s, c, completion, previous in rated_completions(problems)
        if completion["rating"] == -1
    ]


def sample(half: str, seed: int, size: int) -> list[dict]:
    problems = half_of(prm800k_solutions(require_data(PRM800K).read_text().splitlines()), half)
    steps = wrong_steps(problems)
    random.Random(seed).shuffle(steps)
    return [{**step, "half": half} for step in steps[:size]]


def read_audit(path: Path = AUDIT) -> dict[tuple[str, str], str]:
    """(half, key) -> class, from the audit file (tab-separated: half, key, class, note)."""
    with path.open(encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle, delimiter="\t") if row and not row[0].startswith("#")]
    audit = {}
    for half, key, kind, *_ in rows[1:]:
        if kind not in CLASSES:
            raise ValueError(f"{path}: unknown class {kind!r} for {half} {key}")
        audit[(half, key)] = kind
    return audit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="print every sampled step with its class and flag")
    args = parser.parse_args(argv)
    audit = read_audit()
    totals: Counter[str] = Counter()
    flagged: Counter[str] = Counter()
    for half, seed, size in SAMPLES:
        for step in sample(half, seed, size):
            kind = audit.get((half, step["key"]))
            if kind is None:
                raise SystemExit(f"{AUDIT}: {half} {step['key']} is sampled but has no class")
            flag = flag_of(extract_claims(step["text"], previous=step["previous"]))
            totals[kind] += 1
            flagged[kind] += flag is not None
            if args.show:
                print(f"{half} {step['key']} [{kind}] flag={flag}: {' '.join(step['text'].split())[:160]}")
    n = sum(totals.values())
    print(
        f"PRM800K phase-1 steps rated -1, hand-audited sample of {n} ({', '.join(f'{h} seed {s}' for h, s, _ in SAMPLES)})"
    )
    for kind in CLASSES:
        print(f"    {kind:<10} {totals[kind]:>3}  flagged {flagged[kind]}")
    reach = sum(totals[k] for k in IN_STEP)
    caught = sum(flagged[k] for k in IN_STEP)
    print(
        f"within one step's reach: {reach}/{n} ({reach / n:.0%}); flagged {caught} of them; flagged in all {sum(flagged.values())}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
