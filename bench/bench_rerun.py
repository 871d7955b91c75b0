"""Reruns: a relabel from evidence against the full run, and the cache hit rate of a killed-and-restarted run.

.venv/bin/python bench/bench_rerun.py --problems 100
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO_ROOT, demo_config, write_problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    from pipelines import annotate, synthesize

    work = Path(tempfile.mkdtemp(prefix="bench-rerun-"))
    problems = write_problems(work / "problems.jsonl", args.problems, args.seed)
    config = demo_config(problems, ["output.num_shards=2"])
    full = synthesize.run(config, str(work / "full"), cache=str(work / "cache-full"))
    relabel_config = demo_config(
        problems,
        [
            "output.num_shards=2",
            "label.hard_rule=threshold",
            "annotators.arithmetic={}",
            "augment.compression.enabled=true",
        ],
    )
    started = time.perf_counter()
    relabel = annotate.run(str(work / "full"), relabel_config, str(work / "relabel"))
    relabel_wall = time.perf_counter() - started

    # Killed midway: a subprocess run is killed once some samples are cached, then started again.
    cmd = [
        sys.executable,
        str(REPO_ROOT / "run.py"),
        "synthesize",
        "--config",
        str(REPO_ROOT / "configs" / "demo.yaml"),
        "--set",
        f"input.path={problems}",
        "--set",
        "search.problems_per_batch=8",
        "--output",
        str(work / "killed"),
    ]
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cache = work / "killed" / "_cache"
    while proc.poll() is None and len(list(cache.glob("part-*.parquet"))) < 6:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (run,) = (work / "killed" / "schema_v1").glob("cfg_*")
    restarted = json.loads((run / "manifest.json").read_text())
    print(
        json.dumps(
            {
                "problems": args.problems,
                "full_run_wall_s": full["timings"]["wall_seconds"],
                "relabel_wall_s": round(relabel_wall, 2),
                "relabel_speedup": round(full["timings"]["wall_seconds"] / relabel_wall, 1),
                "relabel_engine_calls": relabel["engine"]["engine_calls"],
                "restarted_cache_hit_rate": restarted["engine"]["cache_hit_rate"],
                "restarted_samples_reused": restarted["engine"]["cache_sample_hits"],
                "restarted_samples_generated": restarted["engine"]["cache_sample_misses"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
