"""Sandboxed test runs per second, and the fraction of HumanEval canonical solutions that pass in the sandbox.

    python -m bench.bench_sandbox                  # all 164 HumanEval tasks, a pool of 2
    python -m bench.bench_sandbox --n 40 --workers 1
    python -m bench.bench_sandbox --builtin         # the built-in tasks only (no ../shared needed)

Prints figures; asserts nothing (benchmarks print, tests assert).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from annotators.verifiers.sandbox import SandboxLimits, SandboxResult, run_tests
from domains.code import HUMANEVAL_PATH, builtin_tasks, load_humaneval


def _run_one(problem: dict[str, Any], limits: SandboxLimits) -> SandboxResult:
    program = problem["question"] + problem["answer"]
    meta = problem["meta"]
    return run_tests(program, meta["test"], meta["entry_point"], limits, context=problem["question"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the canonical solutions through the sandbox and print throughput, pass rate and failures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None, help="number of tasks (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="concurrent sandboxes (threads waiting on them)")
    parser.add_argument("--builtin", action="store_true", help="use the built-in tasks, repeated to --n")
    parser.add_argument("--wall-s", type=float, default=10.0)
    args = parser.parse_args(argv)

    if args.builtin or not HUMANEVAL_PATH.exists():
        base = builtin_tasks()
        count = args.n or len(base)
        problems = [base[i % len(base)] for i in range(count)]
        source = "built-in tasks"
    else:
        problems = load_humaneval(limit=args.n)
        source = str(HUMANEVAL_PATH)
    limits = SandboxLimits(wall_s=args.wall_s)

    run_tests("pass\n", "", None, limits)  # warm the page cache once, outside the timing
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(lambda p: _run_one(p, limits), problems))
    elapsed = time.perf_counter() - started

    statuses = Counter(r.status for r in results)
    passed = statuses.get("passed", 0)
    walls = sorted(r.wall_s for r in results)
    figures = {
        "source": source,
        "tasks": len(problems),
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "seconds": round(elapsed, 2),
        "runs_per_s": round(len(problems) / elapsed, 2),
        "pass_fraction": round(passed / len(problems), 4),
        "statuses": dict(statuses),
        "wall_s_median": walls[len(walls) // 2],
        "wall_s_p90": walls[int(0.9 * (len(walls) - 1))],
        "wall_s_max": walls[-1],
        "isolation": ",".join(results[0].isolation) if results else "",
    }
    for key, value in figures.items():
        print(f"{key:>14}: {value}")
    for problem, result in zip(problems, results, strict=True):
        if not result.passed:
            print(f"  not passed: {problem['problem_id']}: {result.status}: {result.reason[:160]}")
    return figures


if __name__ == "__main__":
    main()
