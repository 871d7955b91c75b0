"""Benchmark the arithmetic-claim verifier against human labels and gold solutions.

Prints, for ProcessBench gsm8k (docs/annotators.md §7/§8): precision of its flags against the human
first-error step and recall of first-error steps; for the GSM8K test gold solutions: the false-alarm rate per
line and per equality; and the throughput in steps per second on one core.

    .venv/bin/python bench/bench_arithmetic_verifier.py [--show-flags]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotators.verifiers.arithmetic import ArithmeticLimits, check_step, extract_claims  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PROCESSBENCH = DATA_DIR / "processbench" / "gsm8k.json"
GSM8K_TEST = DATA_DIR / "gsm8k" / "test.jsonl"
PRM800K = DATA_DIR / "prm800k" / "phase1_test.jsonl"


@dataclass
class ProcessBenchScore:
    """Flag precision/recall against human first-error labels (TP/FP as in docs/annotators.md §7)."""

    solutions: int = 0
    with_error: int = 0
    steps: int = 0
    steps_checked: int = 0
    tp: int = 0
    fp: int = 0
    flags_after_error: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / self.with_error if self.with_error else float("nan")


def require_data(path: Path) -> Path:
    """The shared data lives outside the repo; say where it was expected."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: the benchmarks read the shared data from {DATA_DIR} "
            "(a sibling of the repository root); see shared/data/README.md"
        )
    return path


def score_processbench(rows: list[dict], limits: ArithmeticLimits | None = None) -> ProcessBenchScore:
    """TP = flag on the labelled first-error step; FP = flag before it, or on any step of a correct solution."""
    score = ProcessBenchScore()
    for row in rows:
        label = int(row["label"])
        score.solutions += 1
        score.with_error += label >= 0
        for index, step in enumerate(row["steps"]):
            verdict = check_step(step, limits)
            score.steps += 1
            score.steps_checked += verdict.verdict is not None
            if verdict.verdict is not False:
                continue
            if label >= 0 and index == label:
                score.tp += 1
                kind = "TP"
            elif label < 0 or index < label:
                score.fp += 1
                kind = "FP"
            else:
                score.flags_after_error += 1
                kind = "after"
            score.examples.append(f"{kind} {row['id']} step {index} (label {label}): {verdict.reason}")
    return score


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


def prm800k_flags(lines: list[str]) -> dict[str, int]:
    """Flags on PRM800K phase-1 candidate steps, by human rating (-1 bad, 0 neutral, +1 good)."""
    counts = {"steps": 0, "flagged": 0, "flagged_rated_-1": 0, "flagged_rated_0": 0, "flagged_rated_+1": 0}
    for line in lines:
        for step in json.loads(line)["label"]["steps"]:
            for completion in step["completions"] or []:
                counts["steps"] += 1
                if check_step(completion["text"]).verdict is False:
                    counts["flagged"] += 1
                    rating = completion["rating"]
                    key = f"flagged_rated_{'+1' if rating == 1 else rating}"
                    counts[key] = counts.get(key, 0) + 1
    return counts


def _strip_annotations(line: str) -> str:
    import re

    return re.sub(r"<<[^<>]*>>", "", line)


def steps_per_second(steps: list[str], repeats: int = 3) -> float:
    """Single-threaded throughput (one core), best of `repeats` passes."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for step in steps:
            check_step(step)
        best = min(best, time.perf_counter() - start)
    return len(steps) / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-flags", action="store_true", help="print every flagged ProcessBench step")
    args = parser.parse_args(argv)
    try:
        processbench = json.loads(require_data(PROCESSBENCH).read_text())
        gold = [json.loads(line) for line in require_data(GSM8K_TEST).read_text().splitlines() if line.strip()]
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    score = score_processbench(processbench)
    print(f"ProcessBench gsm8k: {score.solutions} solutions, {score.with_error} with a labelled first error")
    print(f"  steps {score.steps}, steps with >=1 checked claim {score.steps_checked}")
    print(f"  TP {score.tp}  FP {score.fp}  flags after the first error {score.flags_after_error}")
    print(f"  precision {score.precision:.3f}  recall of first-error steps {score.recall:.1%}")
    if args.show_flags:
        for line in score.examples:
            print("   ", line)

    for keep in (True, False):
        c = gold_false_alarms(gold, keep_annotations=keep)
        what = "with <<>> annotations" if keep else "annotations stripped"
        print(
            f"GSM8K gold ({what}): {c['lines_flagged']}/{c['lines']} lines flagged "
            f"({c['lines_flagged'] / c['lines']:.2%}; {c['lines_checked']} lines had a claim), "
            f"{c['equalities_flagged']}/{c['equalities']} equalities flagged "
            f"({c['equalities_flagged'] / max(c['equalities'], 1):.2%})"
        )

    if PRM800K.exists():  # a secondary check on MATH-style text; optional
        p = prm800k_flags(PRM800K.read_text().splitlines())
        print(
            f"PRM800K phase-1 candidate steps: {p['flagged']}/{p['steps']} flagged; human rating of the flagged: "
            f"-1: {p['flagged_rated_-1']}, 0: {p['flagged_rated_0']}, +1: {p['flagged_rated_+1']}"
        )

    steps = [s for row in processbench for s in row["steps"]]
    print(f"throughput: {steps_per_second(steps):.0f} ProcessBench steps/s on one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
