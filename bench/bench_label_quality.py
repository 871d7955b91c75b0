"""MC first-error labels against the exact first arithmetic error, on the demo domain, by chain length.

    .venv/bin/python bench/bench_label_quality.py --problems 200 [--run RUN_DIR] [--set search.method=omegaprm]

With --run, scores an existing run instead of running one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import demo_config, read_table, write_problems

from annotators.exact import first_error_agreement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    run = args.run
    if run is None:
        from pipelines import synthesize

        work = Path(tempfile.mkdtemp(prefix="bench-quality-"))
        config = demo_config(write_problems(work / "problems.jsonl", args.problems, args.seed), args.set)
        synthesize.run(config, str(work / "run"))
        run = work / "run"
    rows = read_table(run / "data", "train-*.parquet")
    report = first_error_agreement(rows)
    all_correct = first_error_agreement([{**r, "first_error_index": -1} for r in rows])
    print(
        json.dumps({"run": str(run), "mc": report, "baseline_all_correct_labeller": all_correct["agreement"]}, indent=2)
    )


if __name__ == "__main__":
    main()
