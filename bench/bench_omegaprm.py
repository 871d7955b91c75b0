"""OmegaPRM against per-step MC on the same problems, tiny model and seeds.

    .venv/bin/python bench/bench_omegaprm.py                       # 200 problems; MC at k=8, 4; OmegaPRM at k=8, 4, 3
    .venv/bin/python bench/bench_omegaprm.py --mc-k 64,32,16,8,4   # MC's cost over a wider range of agreement

Prints, for each method: samples (solutions + completions) and generated tokens per labelled step, first-error
agreement with the exact arithmetic first error (by chain length), engine batch fill (mean, p10; per driver call or
step, and per vLLM engine step for the search stage and the raw replay), generated tokens/s of the search stage
against one raw `vllm.LLM.generate` of the same requests, the cost per labelled step by chain length
(2 to 6 steps), and where OmegaPRM's samples went. `--driver requests` runs the request-level driver.

Counting: a labelled step is a distinct (problem, prefix + step) pair; a step labelled in several paths (duplicate
solutions of MC, the shared prefixes of OmegaPRM's paths) counts once. Rows x steps is printed beside it.
OmegaPRM is summarized twice from one run: its first-error paths alone, and with the all-True paths of its
correct rollouts (`positive_paths`). Matched quality (`annotators/compare.py`): each OmegaPRM labels against every
MC run on the OmegaPRM labels' own problems, agreement over all rows and split by claim (rows that claim an error,
rows that claim none) with paired bootstrap intervals, and the dearest MC run the OmegaPRM labels are at least as
good as on every kind of claim they make, with how many times more it pays per labelled step. A table of those
goes to stderr after the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from common import (
    base_sampling,
    demo_config,
    raw_generate,
    read_problems,
    read_table,
    step_fill,
    step_log,
    warm_up,
    write_problems,
)

from annotators.compare import Labeller, matched_quality, mc_assumption, unique_labelled_steps
from annotators.exact import arithmetic_expression, first_error_agreement
from annotators.mc import generated_completions
from domains.arithmetic import parse_expression
from schemas.records import Request


def chain_length(prompt: str) -> int:
    return len(parse_expression(arithmetic_expression(prompt))[1])


def omegaprm_requests(nodes: list[dict], config) -> list[Request]:
    """The requests OmegaPRM sent, rebuilt from its search tree (prompt + prefix, n = rollouts, seed)."""
    from engines.prompts import PromptRenderer

    renderer = PromptRenderer(config.policy)
    base = base_sampling(config)
    problems = read_problems(config)
    requests = []
    for node in nodes:
        if node["rollouts"] and node["seed"] is not None:
            prompt = renderer.render(problems[node["problem_id"]]["question"]) + node["prefix"]
            requests.append(Request(prompt, len(node["rollouts"]), replace(base, seed=node["seed"])))
    return requests


def replay(name: str, run: Path, config) -> list[Request]:
    """The requests a run sent, for the raw-generate replay."""
    if name.startswith("omegaprm"):
        return omegaprm_requests(read_table(run / "evidence" / "omegaprm_nodes", "part-*.parquet"), config)
    from bench_mc import replay_requests

    return replay_requests(run, config)


def summarize(name: str, rows: list[dict], samples_by_problem: dict[str, int], tokens: int) -> dict:
    steps = sum(len(r["completions"]) for r in rows)
    unique = unique_labelled_steps(rows)
    per_length: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_problem[r["problem_id"]].append(r)
    for pid, problem_rows in by_problem.items():
        tally = per_length[chain_length(problem_rows[0]["prompt"])]
        tally[0] += samples_by_problem.get(pid, 0)
        tally[1] += unique_labelled_steps(problem_rows)
    agreement = first_error_agreement(rows)
    samples = sum(samples_by_problem.values())
    return {
        "labels": name,
        "paths": len(rows),
        "labelled_steps": steps,
        "unique_labelled_steps": unique,
        "samples": samples,
        "samples_per_labelled_step": round(samples / steps, 2) if steps else None,
        "samples_per_unique_labelled_step": round(samples / unique, 2) if unique else None,
        "generated_tokens_per_unique_labelled_step": round(tokens / unique, 1) if unique else None,
        "first_error_agreement": round(agreement["agreement"], 4) if agreement["agreement"] is not None else None,
        "agreement_by_kind": {k: round(v["agreement"], 3) for k, v in agreement["by_kind"].items()},
        "agreement_by_chain_length": {k: round(v["agreement"], 3) for k, v in agreement["by_chain_length"].items()},
        "samples_per_unique_labelled_step_by_chain_length": {
            k: round(a / b, 2) for k, (a, b) in sorted(per_length.items()) if b
        },
        "mc_assumption": mc_assumption(rows),
    }


def engine_figures(manifest: dict) -> dict:
    engine = manifest["engine"]
    return {
        "batch_fill_mean": engine.get("batch_fill_mean"),
        "batch_fill_p10": engine.get("batch_fill_p10"),
        "engine_calls": engine.get("engine_calls"),
        "fill_unit": engine.get("fill_unit", "call"),
        "mean_sequences_per_call": engine.get("mean_sequences_per_call"),
        "wall_s": manifest["timings"]["wall_seconds"],
    }


def omegaprm_costs(nodes: list[dict]) -> dict:
    """Where OmegaPRM's samples went: root estimates of questions that end at once (root MC 0 or 1), roots
    of searched questions, and binary-search probes."""
    roots = {n["problem_id"]: n for n in nodes if n["parent_id"] is None}
    ended = sum(len(n["rollouts"]) for n in roots.values() if n["mc"] in (0.0, 1.0))
    searched = sum(len(n["rollouts"]) for n in roots.values() if n["mc"] not in (0.0, 1.0))
    probes = sum(len(n["rollouts"]) for n in nodes if n["parent_id"] is not None)
    return {
        "questions_root_all_correct": sum(n["mc"] == 1.0 for n in roots.values()),
        "questions_root_all_wrong": sum(n["mc"] == 0.0 for n in roots.values()),
        "samples_roots_ended": ended,
        "samples_roots_searched": searched,
        "samples_probes": probes,
    }


def raw_ratio(run: Path, requests: list[Request], tokens: int, config) -> dict:
    stats = json.loads((run / "_work" / "engine_stats.json").read_text())
    search_wall = sum(b["wall_seconds"] for b in stats)
    raw = raw_generate(config, requests)
    return {
        "search_stage_tokens_per_s": round(tokens / search_wall, 1),
        "raw_tokens_per_s": round(raw["tokens"] / raw["wall_s"], 1),
        "ratio_search_to_raw": round((tokens / search_wall) / (raw["tokens"] / raw["wall_s"]), 3),
        "raw_step_fill": raw["step_fill"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--mc-k", default="8,4", help="completions per step of the MC search, one run each")
    parser.add_argument("--omegaprm-k", default="8,4,3", help="rollouts per MC estimate of OmegaPRM, one run each")
    parser.add_argument("--solutions", type=int, default=4)
    parser.add_argument("--search-limit", type=int, default=100)
    parser.add_argument("--rollout-budget", type=int, default=400)
    parser.add_argument("--problems-per-batch", type=int, default=256)
    parser.add_argument(
        "--sequences-in-flight", type=int, default=0, help="search.sequences_in_flight (0: every search at once)"
    )
    parser.add_argument(
        "--driver", default="requests", choices=("rounds", "requests"), help="search.driver (engines/driver.py)"
    )
    parser.add_argument(
        "--work", help="folder of the runs; a run already there with the same config is read again, not rerun"
    )
    parser.add_argument(
        "--no-raw", action="store_true", help="skip the raw-generate replays (labels and costs only, half the time)"
    )
    args = parser.parse_args()
    from pipelines import synthesize

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-omegaprm-"))
    print(f"runs under {work}", file=sys.stderr)
    problems = write_problems(work / "problems.jsonl", args.problems, args.seed)
    common = [
        "cache.enabled=false",
        "output.num_shards=1",
        f"search.problems_per_batch={args.problems_per_batch}",
        f"search.sequences_in_flight={args.sequences_in_flight}",
        f"search.driver={args.driver}",
    ]
    runs = []
    for k in (int(x) for x in args.mc_k.split(",") if x):
        overrides = [*common, f"search.completions_per_step={k}", f"search.num_solutions={args.solutions}"]
        runs.append((f"math_shepherd_mc_k{k}", k, demo_config(problems, overrides)))
    for k in (int(x) for x in args.omegaprm_k.split(",") if x):
        omegaprm = f"{{search_limit: {args.search_limit}, rollout_budget: {args.rollout_budget}, positive_paths: true}}"
        overrides = [
            *common,
            f"search.completions_per_step={k}",
            "search.method=omegaprm",
            f"search.omegaprm={omegaprm}",
        ]
        runs.append((f"omegaprm_k{k}", k, demo_config(problems, overrides)))
    step_fills: dict[str, dict] = {}  # per-step engine fill of each search stage run now
    warm = False  # the engine is warmed before its first use: a rerun that only reads stored runs never starts it
    results = []
    candidates: list[Labeller] = []  # OmegaPRM labels, each compared with every MC run on its own problems
    baselines: list[Labeller] = []
    for name, k, config in runs:
        run = work / name
        stored = run / "manifest.json"
        if stored.exists() and json.loads(stored.read_text())["config_hash"] == config.config_hash():
            manifest = json.loads(stored.read_text())  # a finished run of the same config: read, not rerun
        else:
            if not warm:
                warm_up(config)
                warm = True
            before = step_log(config)
            manifest = synthesize.run(config, str(run))
            step_fills[name] = step_fill(before, step_log(config), config.policy.max_num_seqs)
        rows = read_table(run / "data", "train-*.parquet")
        samples: dict[str, int] = defaultdict(int)
        tokens = manifest["engine"]["generated_tokens"]
        result = {"method": name, "k": k, "code_version": manifest["code_version"], **engine_figures(manifest)}
        if name in step_fills:  # only for a run made now, not one read back from --work
            result["search_step_fill"] = step_fills[name]
        if name.startswith("omegaprm"):
            nodes = read_table(run / "evidence" / "omegaprm_nodes", "part-*.parquet")
            for node in nodes:
                samples[node["problem_id"]] += len(node["rollouts"])
            result["costs"] = omegaprm_costs(nodes)
            first_error = [r for r in rows if json.loads(r["meta"])["kind"] == "first_error"]
            result["labels"] = [
                summarize("first_error_paths", first_error, samples, tokens),
                summarize("first_error_and_correct_rollout_paths", rows, samples, tokens),
            ]
            candidates.append(Labeller(f"{name} first_error_paths", first_error, samples))
            candidates.append(Labeller(f"{name} first_error_and_correct_rollout_paths", rows, samples))
        else:
            for sol in read_table(run / "evidence" / "solutions", "part-*.parquet"):
                samples[sol["problem_id"]] += 1
            for completion in generated_completions(read_table(run / "evidence" / "completions", "part-*.parquet")):
                samples[completion["problem_id"]] += 1
            result["labels"] = [summarize("all_steps", rows, samples, tokens)]
            baselines.append(Labeller(name, rows, samples))
        if sum(samples.values()) != manifest["engine"]["sequences"]:
            raise SystemExit(
                f"{name}: counted {sum(samples.values())} samples, the engine generated "
                f"{manifest['engine']['sequences']}"
            )
        if not args.no_raw:
            if not warm:
                warm_up(config)
                warm = True
            result.update(raw_ratio(run, replay(name, run, config), tokens, config))
        results.append(result)
    matched = [matched_quality(candidate, baselines) for candidate in candidates]
    print(json.dumps({"problems": args.problems, "results": results, "matched_quality": matched}, indent=2))
    print(matched_table(matched), file=sys.stderr)


def matched_table(matched: list[dict]) -> str:
    """One line per OmegaPRM labels: its cost and agreement by claim, and the dearest MC run it is at least as good
    as on the same problems (by the estimates, and significantly better), with how many times more that run pays."""

    def cell(verdict: dict) -> str:
        return f"{verdict['ratio']}x ({verdict['baseline']})" if verdict["baseline"] else "none"

    lines = [
        "OmegaPRM labels | samples/step | agreement on error / no-error claims | "
        "dearest MC run it equals or beats (x its cost) | dearest it beats significantly"
    ]
    for m in matched:
        a = m["agreement"]
        lines.append(
            f"{m['candidate']} | {m['samples_per_unique_labelled_step']} | {a['error_claims']} / "
            f"{a['no_error_claims']} | {cell(m['matched']['point'])} | {cell(m['matched']['significantly_better'])}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
