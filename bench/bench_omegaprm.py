"""OmegaPRM against per-step MC on the same problems, tiny model and seeds.

    .venv/bin/python bench/bench_omegaprm.py --problems 100

Prints, for each method: samples (solutions + completions) and generated tokens per labelled step, first-error
agreement with the exact arithmetic first error (by chain length), engine batch fill (mean, p10), generated
tokens/s of the search stage against one raw `vllm.LLM.generate` of the same requests, and the cost per
labelled step by chain length (2 to 6 steps).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from common import demo_config, read_table, write_problems

from annotators.exact import arithmetic_expression, first_error_agreement
from domains.arithmetic import parse_expression
from schemas.records import Request, SamplingParams


def chain_length(prompt: str) -> int:
    return len(parse_expression(arithmetic_expression(prompt))[1])


def omegaprm_requests(run: Path, config) -> list[Request]:
    """The requests OmegaPRM sent, rebuilt from its search tree (prompt + prefix, n = rollouts, seed)."""
    from engines.prompts import PromptRenderer

    renderer = PromptRenderer(config.policy)
    s = config.sampling
    base = SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=tuple(s.stop))
    problems = {json.loads(x)["problem_id"]: json.loads(x) for x in Path(config.input.path).read_text().splitlines()}
    requests = []
    for node in read_table(run / "evidence" / "omegaprm_nodes", "part-*.parquet"):
        if node["rollouts"] and node["seed"] is not None:
            prompt = renderer.render(problems[node["problem_id"]]["question"]) + node["prefix"]
            requests.append(Request(prompt, len(node["rollouts"]), replace(base, seed=node["seed"])))
    return requests


def summarize(name: str, run: Path, manifest: dict, samples_by_problem: dict[str, int], tokens: int) -> dict:
    rows = read_table(run / "data", "train-*.parquet")
    steps = sum(len(r["completions"]) for r in rows)
    per_length: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    labelled_problems = defaultdict(int)
    for r in rows:
        labelled_problems[r["problem_id"]] += len(r["completions"])
    prompts = {r["problem_id"]: r["prompt"] for r in rows}
    for pid, n_steps in labelled_problems.items():
        tally = per_length[chain_length(prompts[pid])]
        tally[0] += samples_by_problem.get(pid, 0)
        tally[1] += n_steps
    agreement = first_error_agreement(rows)
    engine = manifest["engine"]
    samples = sum(samples_by_problem.values())
    return {
        "method": name,
        "paths": len(rows),
        "labelled_steps": steps,
        "samples": samples,
        "samples_per_labelled_step": round(samples / steps, 2) if steps else None,
        "generated_tokens_per_labelled_step": round(tokens / steps, 1) if steps else None,
        "first_error_agreement": round(agreement["agreement"], 4) if agreement["agreement"] is not None else None,
        "agreement_by_kind": {k: round(v["agreement"], 3) for k, v in agreement["by_kind"].items()},
        "agreement_by_chain_length": {k: round(v["agreement"], 3) for k, v in agreement["by_chain_length"].items()},
        "samples_per_labelled_step_by_chain_length": {
            k: round(a / b, 2) for k, (a, b) in sorted(per_length.items()) if b
        },
        "batch_fill_mean": engine.get("batch_fill_mean"),
        "batch_fill_p10": engine.get("batch_fill_p10"),
        "engine_calls": engine.get("engine_calls"),
        "mean_sequences_per_call": engine.get("mean_sequences_per_call"),
        "wall_s": manifest["timings"]["wall_seconds"],
    }


def raw_ratio(run: Path, requests: list[Request], tokens: int, config) -> dict:
    from engines import get_engine

    stats = json.loads((run / "_work" / "engine_stats.json").read_text())
    search_wall = sum(b["wall_seconds"] for b in stats)
    engine = get_engine(config.policy)
    started = time.perf_counter()
    out = engine.generate(requests)
    raw_wall = time.perf_counter() - started
    raw_tokens = sum(s.n_tokens for g in out for s in g)
    return {
        "search_stage_tokens_per_s": round(tokens / search_wall, 1),
        "raw_tokens_per_s": round(raw_tokens / raw_wall, 1),
        "ratio_search_to_raw": round((tokens / search_wall) / (raw_tokens / raw_wall), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--solutions", type=int, default=4)
    parser.add_argument("--search-limit", type=int, default=20)
    args = parser.parse_args()
    from pipelines import synthesize

    work = Path(tempfile.mkdtemp(prefix="bench-omegaprm-"))
    problems = write_problems(work / "problems.jsonl", args.problems, args.seed)
    common = [f"search.completions_per_step={args.k}", "cache.enabled=false", "output.num_shards=1"]
    mc_config = demo_config(problems, [*common, f"search.num_solutions={args.solutions}"])
    om_config = demo_config(
        problems,
        [
            *common,
            "search.method=omegaprm",
            f"search.omegaprm={{search_limit: {args.search_limit}, rollout_budget: 400}}",
        ],
    )
    results = []
    for name, config in (("math_shepherd_mc", mc_config), ("omegaprm", om_config)):
        run = work / name
        manifest = synthesize.run(config, str(run))
        samples: dict[str, int] = defaultdict(int)
        if name == "omegaprm":
            for node in read_table(run / "evidence" / "omegaprm_nodes", "part-*.parquet"):
                samples[node["problem_id"]] += len(node["rollouts"])
            requests = omegaprm_requests(run, config)
        else:
            for sol in read_table(run / "evidence" / "solutions", "part-*.parquet"):
                samples[sol["problem_id"]] += 1
            for comp in read_table(run / "evidence" / "completions", "part-*.parquet"):
                samples[comp["problem_id"]] += 1
            from bench_mc import replay_requests

            requests = replay_requests(run, config)
        tokens = manifest["engine"]["generated_tokens"]
        summary = summarize(name, run, manifest, samples, tokens)
        summary.update(raw_ratio(run, requests, tokens, config))
        results.append(summary)
    mc, om = results
    ratio = (
        mc["samples_per_labelled_step"] / om["samples_per_labelled_step"] if om["samples_per_labelled_step"] else None
    )
    print(
        json.dumps(
            {
                "problems": args.problems,
                "k": args.k,
                "results": results,
                "mc_over_omegaprm_samples_per_labelled_step": round(ratio, 2) if ratio else None,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
