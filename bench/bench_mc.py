"""Per-step MC (Math-Shepherd) through the whole pipeline against the same requests sent straight to vLLM.

    .venv/bin/python bench/bench_mc.py --problems 200

Prints: problems, labelled steps, completions per labelled step, generated tokens/s through the pipeline
(whole run, engine start included, and the search stage alone) against one raw `vllm.LLM.generate` call with
the same prompts, n and seeds (the ratio), mean engine batch size, and Parquet rows/s of the shard writer.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import (
    demo_config,
    mc_requests,
    raw_generate,
    read_table,
    step_fill,
    step_log,
    warm_up,
    write_problems,
)

from annotators.mc import generated_completions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()

    from pipelines import synthesize
    from schemas import tables
    from schemas.tables import table_bytes

    work = Path(tempfile.mkdtemp(prefix="bench-mc-"))
    problems = write_problems(work / "problems.jsonl", args.problems, args.seed)
    config = demo_config(problems, ["output.num_shards=4", *args.set])
    warm_up(config)
    before = step_log(config)
    manifest = synthesize.run(config, str(work / "run"))
    search_step_fill = step_fill(before, step_log(config), config.policy.max_num_seqs)
    counts, engine_stats = manifest["counts"], manifest["engine"]
    wall = manifest["timings"]["wall_seconds"]
    tokens = engine_stats["generated_tokens"]
    stats = json.loads((work / "run" / "_work" / "engine_stats.json").read_text())
    search_wall = sum(b["wall_seconds"] for b in stats)

    requests = mc_requests(work / "run", config)
    raw = raw_generate(config, requests)
    raw_wall, raw_tokens = raw["wall_s"], raw["tokens"]

    rows = read_table(work / "run" / "data", "train-*.parquet")
    started = time.perf_counter()
    for _ in range(5):
        table_bytes(rows, tables.paths_schema(), "zstd", 1000)
    parquet_rows_per_s = 5 * len(rows) / (time.perf_counter() - started)

    # What the engine generated: a prefix shared by solutions is sampled once (evidence stores it per solution).
    completions = len(generated_completions(read_table(work / "run" / "evidence" / "completions", "part-*.parquet")))
    if completions + counts["solutions"] != engine_stats["sequences"]:
        raise SystemExit(
            f"counted {completions} completions and {counts['solutions']} solutions, the engine generated "
            f"{engine_stats['sequences']} sequences"
        )
    completions_per_step = completions / counts["steps"] if counts["steps"] else 0.0
    pipe_tps = tokens / wall
    search_tps = tokens / search_wall
    raw_tps = raw_tokens / raw_wall
    print(
        json.dumps(
            {
                "problems": counts["problems"],
                "labelled_paths": counts["paths"],
                "labelled_steps": counts["steps"],
                "solutions": counts["solutions"],
                "completions": completions,
                "completion_rows": counts["completions"],
                "samples_per_labelled_step": round(engine_stats["sequences"] / counts["steps"], 2),
                "completions_per_labelled_step": round(completions_per_step, 2),
                "generated_tokens": tokens,
                "pipeline_wall_s": wall,
                "pipeline_tokens_per_s": round(pipe_tps, 1),
                "search_stage_wall_s": round(search_wall, 2),
                "search_stage_tokens_per_s": round(search_tps, 1),
                "raw_requests": len(requests),
                "search_step_fill": search_step_fill,
                "raw_step_fill": raw["step_fill"],
                "raw_generate_wall_s": round(raw_wall, 2),
                "raw_generate_tokens": raw_tokens,
                "raw_tokens_per_s": round(raw_tps, 1),
                "ratio_pipeline_to_raw": round(pipe_tps / raw_tps, 3),
                "ratio_search_stage_to_raw": round(search_tps / raw_tps, 3),
                "engine_calls": engine_stats["engine_calls"],
                "mean_engine_batch_sequences": engine_stats["mean_sequences_per_call"],
                "parquet_rows_per_s": round(parquet_rows_per_s, 1),
                "output": str(work / "run"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
