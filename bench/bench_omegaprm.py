"""OmegaPRM against per-step MC on the same problems, tiny model and seeds.

    .venv/bin/python bench/bench_omegaprm.py                    # 200 problems; MC at k=8, 4; OmegaPRM at k=8, 4, 3
    .venv/bin/python bench/bench_omegaprm.py --mc-k 32,16,8,4   # MC's cost over a wider range of agreement

Prints, for each method: samples (solutions + completions) and generated tokens per labelled step, first-error
agreement with the exact arithmetic first error (by chain length), engine batch fill (mean, p10), generated
tokens/s of the search stage against one raw `vllm.LLM.generate` of the same requests, the cost per labelled
step by chain length (2 to 6 steps), and where OmegaPRM's samples went.

Counting: a labelled step is a distinct (problem, prefix + step) pair; a step labelled in several paths (duplicate
solutions of MC, the shared prefixes of OmegaPRM's paths) counts once. Rows x steps is printed beside it.
OmegaPRM is summarized twice from one run: its first-error paths alone, and with the all-True paths of its
correct rollouts (`positive_paths`). MC runs at Math-Shepherd's k = 8; OmegaPRM at several k, so the comparison
can be made at matched quality: the cheapest OmegaPRM whose first-error agreement is at least MC's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

from common import base_sampling, demo_config, read_table, warm_up, write_problems

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
    problems = {json.loads(x)["problem_id"]: json.loads(x) for x in Path(config.input.path).read_text().splitlines()}
    requests = []
    for node in nodes:
        if node["rollouts"] and node["seed"] is not None:
            prompt = renderer.render(problems[node["problem_id"]]["question"]) + node["prefix"]
            requests.append(Request(prompt, len(node["rollouts"]), replace(base, seed=node["seed"])))
    return requests


def unique_labelled_steps(rows: list[dict]) -> int:
    """Distinct (problem, prefix + step) pairs: a step labelled twice (duplicate solutions, shared prefixes of
    several paths) is one piece of supervision, for either method."""
    return len(
        {(r["problem_id"], tuple(r["completions"][: i + 1])) for r in rows for i in range(len(r["completions"]))}
    )


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
    }


def engine_figures(manifest: dict) -> dict:
    engine = manifest["engine"]
    return {
        "batch_fill_mean": engine.get("batch_fill_mean"),
        "batch_fill_p10": engine.get("batch_fill_p10"),
        "engine_calls": engine.get("engine_calls"),
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
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--mc-k", default="8,4", help="completions per step of the MC search, one run each")
    parser.add_argument("--omegaprm-k", default="8,4,3", help="rollouts per MC estimate of OmegaPRM, one run each")
    parser.add_argument("--solutions", type=int, default=4)
    parser.add_argument("--search-limit", type=int, default=100)
    parser.add_argument("--rollout-budget", type=int, default=400)
    parser.add_argument("--problems-per-batch", type=int, default=256)
    args = parser.parse_args()
    from pipelines import synthesize

    work = Path(tempfile.mkdtemp(prefix="bench-omegaprm-"))
    problems = write_problems(work / "problems.jsonl", args.problems, args.seed)
    common = ["cache.enabled=false", "output.num_shards=1", f"search.problems_per_batch={args.problems_per_batch}"]
    runs = []
    for k in (int(x) for x in args.mc_k.split(",")):
        overrides = [*common, f"search.completions_per_step={k}", f"search.num_solutions={args.solutions}"]
        runs.append((f"math_shepherd_mc_k{k}", k, demo_config(problems, overrides)))
    for k in (int(x) for x in args.omegaprm_k.split(",")):
        omegaprm = f"{{search_limit: {args.search_limit}, rollout_budget: {args.rollout_budget}, positive_paths: true}}"
        overrides = [
            *common,
            f"search.completions_per_step={k}",
            "search.method=omegaprm",
            f"search.omegaprm={omegaprm}",
        ]
        runs.append((f"omegaprm_k{k}", k, demo_config(problems, overrides)))
    warm_up(runs[0][2])
    results = []
    rows_of: dict[str, list[dict]] = {}  # labelled rows by "method labels", to compare on the same problems
    for name, k, config in runs:
        run = work / name
        manifest = synthesize.run(config, str(run))
        rows = read_table(run / "data", "train-*.parquet")
        samples: dict[str, int] = defaultdict(int)
        tokens = manifest["engine"]["generated_tokens"]
        result = {"method": name, "k": k, **engine_figures(manifest)}
        if name.startswith("omegaprm"):
            nodes = read_table(run / "evidence" / "omegaprm_nodes", "part-*.parquet")
            for node in nodes:
                samples[node["problem_id"]] += len(node["rollouts"])
            requests = omegaprm_requests(nodes, config)
            result["costs"] = omegaprm_costs(nodes)
            first_error = [r for r in rows if json.loads(r["meta"])["kind"] == "first_error"]
            result["labels"] = [
                summarize("first_error_paths", first_error, samples, tokens),
                summarize("first_error_and_correct_rollout_paths", rows, samples, tokens),
            ]
            rows_of[f"{name} first_error_paths"] = first_error
            rows_of[f"{name} first_error_and_correct_rollout_paths"] = rows
        else:
            for sol in read_table(run / "evidence" / "solutions", "part-*.parquet"):
                samples[sol["problem_id"]] += 1
            for completion in generated_completions(read_table(run / "evidence" / "completions", "part-*.parquet")):
                samples[completion["problem_id"]] += 1
            from bench_mc import replay_requests

            requests = replay_requests(run, config)
            result["labels"] = [summarize("all_steps", rows, samples, tokens)]
            rows_of[name] = rows
        if sum(samples.values()) != manifest["engine"]["sequences"]:
            raise SystemExit(
                f"{name}: counted {sum(samples.values())} samples, the engine generated "
                f"{manifest['engine']['sequences']}"
            )
        result.update(raw_ratio(run, requests, tokens, config))
        results.append(result)
    # Matched quality: for each MC run, the cheapest OmegaPRM labels whose agreement is at least as good.
    candidates = [
        (f"{r['method']} {labels['labels']}", labels)
        for r in results
        if r["method"].startswith("omegaprm")
        for labels in r["labels"]
        if labels["first_error_agreement"] is not None and labels["samples_per_unique_labelled_step"]
    ]
    matched = []
    for result in (r for r in results if r["method"].startswith("math_shepherd")):
        mc = result["labels"][0]
        against = [
            {
                "omegaprm": name,
                "agreement_minus_mc": round(labels["first_error_agreement"] - mc["first_error_agreement"], 4),
                # OmegaPRM labels no path of a question whose root is all right or all wrong: MC's agreement on
                # only the questions OmegaPRM labelled tells whether its lead comes from easier questions.
                "mc_agreement_on_the_same_problems": same_problems_agreement(rows_of[result["method"]], rows_of[name]),
                "mc_over_omegaprm_samples_per_unique_labelled_step": round(
                    mc["samples_per_unique_labelled_step"] / labels["samples_per_unique_labelled_step"], 2
                ),
                "mc_over_omegaprm_samples_per_labelled_step": round(
                    mc["samples_per_labelled_step"] / labels["samples_per_labelled_step"], 2
                ),
            }
            for name, labels in candidates
        ]
        eligible = [row for row in against if row["agreement_minus_mc"] >= 0]
        best = max(eligible, key=lambda row: row["mc_over_omegaprm_samples_per_unique_labelled_step"], default=None)
        matched.append({"mc": result["method"], "against": against, "cheapest_at_equal_or_better_agreement": best})
    frontier = mc_cost_at_agreement(
        [r["labels"][0] for r in results if r["method"].startswith("math_shepherd")], candidates
    )
    print(
        json.dumps(
            {"problems": args.problems, "results": results, "against_mc": matched, "at_equal_agreement": frontier},
            indent=2,
        )
    )


def same_problems_agreement(mc_rows: list[dict], omegaprm_rows: list[dict]) -> dict:
    """MC's first-error agreement on only the questions the OmegaPRM rows come from: overall and on solutions
    with an exact error (OmegaPRM's first-error paths are wrong rollouts, so that is the like-for-like figure)."""
    problems = {r["problem_id"] for r in omegaprm_rows}
    agreement = first_error_agreement([r for r in mc_rows if r["problem_id"] in problems])
    erroneous = agreement["by_kind"].get("erroneous", {}).get("agreement")
    return {
        "all": round(agreement["agreement"], 4) if agreement["agreement"] is not None else None,
        "erroneous": round(erroneous, 4) if erroneous is not None else None,
    }


def mc_cost_at_agreement(mc_runs: list[dict], omegaprm: list[tuple[str, dict]]) -> list[dict]:
    """For each OmegaPRM result, what MC pays per distinct labelled step to reach the same agreement: linear
    between the two MC runs (different k) whose agreements bracket it; None outside the measured range."""
    points = sorted(
        (m["first_error_agreement"], m["samples_per_unique_labelled_step"])
        for m in mc_runs
        if m["first_error_agreement"] is not None and m["samples_per_unique_labelled_step"]
    )
    out = []
    for name, labels in omegaprm:
        target = labels["first_error_agreement"]
        cost = None
        for (a0, c0), (a1, c1) in pairwise(points):
            if a0 <= target <= a1 and a1 > a0:
                cost = c0 + (c1 - c0) * (target - a0) / (a1 - a0)
        out.append(
            {
                "omegaprm": name,
                "agreement": target,
                "mc_samples_per_unique_labelled_step_at_that_agreement": round(cost, 2) if cost else None,
                "ratio": round(cost / labels["samples_per_unique_labelled_step"], 2) if cost else None,
                "mc_agreement_range": [points[0][0], points[-1][0]] if points else None,
            }
        )
    return out


if __name__ == "__main__":
    main()
