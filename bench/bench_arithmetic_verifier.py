"""Benchmark the claim verifier (arithmetic and symbolic claims) against human labels and gold solutions.

Prints, per data set and per half (even- and odd-indexed problems: rules were developed on the even half, the odd
half is held out), the precision of its flags and the recall of wrong steps, split by claim kind (arithmetic, congruence,
symbolic): ProcessBench gsm8k and, when their files are present, ProcessBench math / olympiadbench / omnimath
(flags against the human first-error step), and PRM800K phase-1 candidate steps (rated -1 wrong, +1 right). Also
the false flags on gold solutions (GSM8K test, MATH500), and the throughput of each pass in steps per second on
one core. Figures and how to read them: docs/verifiers.md.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_arithmetic_verifier.py [--show-flags]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotators.verifiers.arithmetic import ArithmeticLimits, ClaimScan, check_step, extract_claims  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PROCESSBENCH = DATA_DIR / "processbench" / "gsm8k.json"
COMPETITION_SUBSETS = ("math", "olympiadbench", "omnimath")
GSM8K_TEST = DATA_DIR / "gsm8k" / "test.jsonl"
PRM800K = DATA_DIR / "prm800k" / "phase1_test.jsonl"
MATH500 = DATA_DIR / "math500" / "test.jsonl"
KINDS = ("arithmetic", "symbolic", "congruence", "divisibility")
ARITHMETIC_ONLY = ArithmeticLimits(symbolic=False)


@dataclass
class FlagScore:
    """Flags against human labels: TP = a flag on a wrong step, FP = a flag on a step humans call right."""

    items: int = 0  # solutions (ProcessBench) or rated steps (PRM800K)
    wrong: int = 0  # items with a labelled wrong step: the recall denominator
    steps: int = 0
    steps_checked: int = 0
    tp: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    fp: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    flags_after_error: int = 0
    examples: list[str] = field(default_factory=list)

    def precision(self, kind: str | None = None) -> float:
        tp, fp = self._counts(kind)
        return tp / (tp + fp) if tp + fp else float("nan")

    def recall(self, kind: str | None = None) -> float:
        tp, _ = self._counts(kind)
        return tp / self.wrong if self.wrong else float("nan")

    def _counts(self, kind: str | None) -> tuple[int, int]:
        kinds = KINDS if kind is None else (kind,)
        return sum(self.tp[k] for k in kinds), sum(self.fp[k] for k in kinds)

    # the names the earlier single-kind score used (tests and callers read these)
    @property
    def tp_total(self) -> int:
        return self._counts(None)[0]

    @property
    def fp_total(self) -> int:
        return self._counts(None)[1]


ProcessBenchScore = FlagScore


def flag_of(scan: ClaimScan) -> str | None:
    """The kind of the first wrong claim of a step (its verdict would be False), or None if nothing is flagged."""
    if scan.aborted:
        return None
    wrong = next((c for c in scan.claims if not c.holds), None)
    return wrong.kind if wrong is not None else None


def half_of(rows: list, half: str | None) -> list:
    """`even` / `odd`-indexed rows (by problem), or all of them."""
    if half is None:
        return rows
    return rows[half == "odd" :: 2]


def require_data(path: Path) -> Path:
    """The shared data lives outside the repo; say where it was expected."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: the benchmarks read the shared data from {DATA_DIR} "
            "(a sibling of the repository root); see shared/data/README.md"
        )
    return path


def score_processbench(rows: list[dict], limits: ArithmeticLimits | None = None) -> FlagScore:
    """TP = flag on the labelled first-error step; FP = flag before it, or on any step of a correct solution."""
    score = FlagScore()
    for row in rows:
        label = int(row["label"])
        score.items += 1
        score.wrong += label >= 0
        for index, step in enumerate(row["steps"]):
            scan = extract_claims(step, limits, previous=row["steps"][index - 1] if index else "")
            kind = flag_of(scan)
            score.steps += 1
            score.steps_checked += bool(scan.claims) and not scan.aborted
            if kind is None:
                continue
            if label >= 0 and index == label:
                score.tp[kind] += 1
                tag = "TP"
            elif label < 0 or index < label:
                score.fp[kind] += 1
                tag = "FP"
            else:
                score.flags_after_error += 1
                tag = "after"
            reason = _reason(scan)
            score.examples.append(f"{tag} {kind} {row['id']} step {index} (label {label}): {reason}")
    return score


def _reason(scan: ClaimScan) -> str:
    wrong = next(c for c in scan.claims if not c.holds)
    return wrong.describe()


def _chosen_text(step: dict) -> str:
    """The text the labeller continued from: the chosen completion, or the human-written one."""
    chosen = step.get("chosen_completion")
    if chosen is not None and step["completions"]:
        return step["completions"][chosen]["text"]
    return (step.get("human_completion") or {}).get("text") or ""


def prm800k_solutions(lines: list[str]) -> list[list[dict]]:
    """PRM800K solutions grouped by problem, in file order (a problem may have several labelled solutions)."""
    by_problem: dict[str, list[dict]] = {}
    for line in lines:
        record = json.loads(line)
        by_problem.setdefault(record["question"]["problem"], []).append(record)
    return list(by_problem.values())


def rated_completions(problems: list[list[dict]]) -> Iterator[tuple[int, int, int, int, dict, str]]:
    """Every candidate step of every labelled solution, in file order: (problem index, record index, step index,
    completion index, completion, the text the labeller continued from before this step)."""
    for p_index, records in enumerate(problems):
        for r_index, record in enumerate(records):
            previous = ""
            for s_index, step in enumerate(record["label"]["steps"]):
                for c_index, completion in enumerate(step["completions"] or []):
                    yield p_index, r_index, s_index, c_index, completion, previous
                previous = _chosen_text(step) or previous


def score_prm800k(problems: list[list[dict]], limits: ArithmeticLimits | None = None) -> FlagScore:
    """Every candidate step rated -1 (wrong) or +1 (right); TP = flag on a -1, FP = flag on a +1; 0 is left out."""
    score = FlagScore()
    for p_index, _, s_index, _, completion, previous in rated_completions(problems):
        rating = completion["rating"]
        if rating not in (-1, 1):
            continue
        score.items += 1
        score.wrong += rating == -1
        score.steps += 1
        scan = extract_claims(completion["text"], limits, previous=previous)
        score.steps_checked += bool(scan.claims) and not scan.aborted
        kind = flag_of(scan)
        if kind is None:
            continue
        tag = "TP" if rating == -1 else "FP"
        (score.tp if rating == -1 else score.fp)[kind] += 1
        reason = _reason(scan)
        score.examples.append(f"{tag} {kind} problem {p_index} step {s_index} (rating {rating}): {reason}")
    return score


def math500_false_flags(
    rows: list[dict], limits: ArithmeticLimits | None = None, kinds: dict[str, int] | None = None
) -> tuple[int, int, list[str]]:
    """(paragraphs flagged, paragraphs, reasons) on MATH500 gold solutions: right by construction. `kinds`, if
    given, counts the claims checked per kind (each one should hold)."""
    flagged, total, examples = 0, 0, []
    for index, row in enumerate(rows):
        for paragraph in row["solution"].split("\n\n"):
            total += 1
            scan = extract_claims(paragraph, limits)
            if kinds is not None and not scan.aborted:
                for claim in scan.claims:
                    kinds[claim.kind] += 1
            if flag_of(scan) is not None:
                flagged += 1
                examples.append(f"math500 {index}: {check_step(paragraph, limits).reason}")
    return flagged, total, examples


def gold_false_alarms(rows: list[dict], keep_annotations: bool) -> dict[str, int]:
    """Flag counts on GSM8K gold solution lines (all correct by construction)."""
    counts = {"lines": 0, "lines_checked": 0, "lines_flagged": 0, "equalities": 0, "equalities_flagged": 0}
    for row in rows:
        for line in row["answer"].split("\n"):
            if line.startswith("####") or not line.strip():
                continue
            if not keep_annotations:
                line = _strip_annotations(line)
            scan = extract_claims(line)
            counts["lines"] += 1
            counts["lines_checked"] += bool(scan.claims)
            counts["lines_flagged"] += any(not c.holds for c in scan.claims)
            counts["equalities"] += len(scan.claims)
            counts["equalities_flagged"] += sum(not c.holds for c in scan.claims)
    return counts


def _strip_annotations(line: str) -> str:

    return re.sub(r"<<[^<>]*>>", "", line)


def steps_per_second(steps: list[str], limits: ArithmeticLimits | None = None, repeats: int = 3) -> float:
    """Single-threaded throughput (one core), best of `repeats` passes."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for step in steps:
            check_step(step, limits)
        best = min(best, time.perf_counter() - start)
    return len(steps) / best


def _print_score(name: str, score: FlagScore, unit: str) -> None:
    print(f"{name}: {score.items} {unit}, {score.wrong} wrong; {score.steps_checked}/{score.steps} steps with a claim")
    for kind in (None, *KINDS):
        tp, fp = score._counts(kind)
        print(
            f"    {kind or 'all':<12} TP {tp:4d}  FP {fp:3d}  precision {score.precision(kind):.3f}  "
            f"recall {score.recall(kind):.1%}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-flags", action="store_true", help="print every flag that is not a true positive")
    parser.add_argument("--show-all", action="store_true", help="print true positives too")
    args = parser.parse_args(argv)
    try:
        processbench = json.loads(require_data(PROCESSBENCH).read_text())
        gold = [json.loads(line) for line in require_data(GSM8K_TEST).read_text().splitlines() if line.strip()]
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def show(score: FlagScore) -> None:
        for line in score.examples:
            if args.show_all or (args.show_flags and not line.startswith("TP")):
                print("       ", line)

    subsets = {"gsm8k": processbench}
    for name in COMPETITION_SUBSETS:
        path = PROCESSBENCH.with_name(f"{name}.json")
        if path.exists():
            subsets[name] = json.loads(path.read_text())
        else:
            print(f"ProcessBench {name}: not measured, {path} is absent")
    for name, rows in subsets.items():
        for half in ("even", "odd", None):
            score = score_processbench(half_of(rows, half))
            _print_score(f"ProcessBench {name} ({half or 'whole set'}{' half' if half else ''})", score, "solutions")
            if half:
                show(score)

    if PRM800K.exists():
        problems = prm800k_solutions(PRM800K.read_text().splitlines())
        for half in ("even", "odd", None):
            score = score_prm800k(half_of(problems, half))
            where = f"{half} half" if half else "whole set"
            _print_score(f"PRM800K phase-1 ({where}, rated -1/+1 steps)", score, "rated steps")
            if half:
                show(score)
    else:
        print(f"PRM800K: not measured, {PRM800K} is absent")

    for keep in (True, False):
        c = gold_false_alarms(gold, keep_annotations=keep)
        what = "with <<>> annotations" if keep else "annotations stripped"
        print(
            f"GSM8K gold ({what}): {c['lines_flagged']}/{c['lines']} lines flagged "
            f"({c['lines_flagged'] / c['lines']:.2%}; {c['lines_checked']} lines had a claim), "
            f"{c['equalities_flagged']}/{c['equalities']} equalities flagged "
            f"({c['equalities_flagged'] / max(c['equalities'], 1):.2%})"
        )
    if MATH500.exists():
        rows = [json.loads(line) for line in MATH500.read_text().splitlines() if line.strip()]
        for half in ("even", "odd"):
            kinds = dict.fromkeys(KINDS, 0)
            flagged, total, examples = math500_false_flags(half_of(rows, half), kinds=kinds)
            checked = ", ".join(f"{kind} {n}" for kind, n in kinds.items())
            print(f"MATH500 gold ({half} half): {flagged}/{total} paragraphs flagged; claims checked: {checked}")
            if args.show_flags:
                for line in examples:
                    print("       ", line)

    steps = [s for row in processbench for s in row["steps"]]
    if PRM800K.exists():
        steps += [
            c["text"]
            for record in (json.loads(line) for line in PRM800K.read_text().splitlines())
            for step in record["label"]["steps"]
            for c in step["completions"] or []
        ]
    print(
        f"throughput on {len(steps)} ProcessBench gsm8k + PRM800K steps, one core: "
        f"arithmetic pass {steps_per_second(steps, ARITHMETIC_ONLY):.0f} steps/s, "
        f"arithmetic + symbolic {steps_per_second(steps):.0f} steps/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
