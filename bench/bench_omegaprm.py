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
from pathlib import Path

from common import (
    Runs,
    demo_config,
    engine_figures,
    omegaprm_costs,
    raw_ratio,
    read_table,
    rollout_budget,
    run_requests,
    samples_by_problem,
    write_problems,
)

from annotators.compare import Labeller, matched_quality, mc_assumption, unique_labelled_steps
from annotators.exact import arithmetic_expression, first_error_agreement
from domains.arithmetic import parse_expression


def chain_length(prompt: str) -> int:
    return len(parse_expression(arithmetic_expression(prompt))[1])


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--mc-k", default="8,4", help="completions per step of the MC search, one run each")
    parser.add_argument("--omegaprm-k", default="8,4,3", help="rollouts per MC estimate of OmegaPRM, one run each")
    parser.add_argument("--solutions", type=int, default=4)
    parser.add_argument("--search-limit", type=int, default=100)
    parser.add_argument(
        "--rollout-budget", type=rollout_budget, default=400, help="completions per question: a number, or auto"
    )
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
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-omegaprm-"))
    print(f"runs under {work}", file=sys.stderr)
    # Named by count and seed: a run in --work is read back only when its problems are the same ones.
    problems = write_problems(work / f"problems-{args.problems}-seed{args.seed}.jsonl", args.problems, args.seed)
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
    made = Runs(work)
    results = []
    candidates: list[Labeller] = []  # OmegaPRM labels, each compared with every MC run on its own problems
    baselines: list[Labeller] = []
    for name, k, config in runs:
        run, manifest, search_step_fill = made.run(name, config)
        rows = read_table(run / "data", "train-*.parquet")
        tokens = manifest["engine"]["generated_tokens"]
        result = {"method": name, "k": k, "code_version": manifest["code_version"], **engine_figures(manifest)}
        if search_step_fill is not None:  # only for a run made now, not one read back from --work
            result["search_step_fill"] = search_step_fill
        samples = samples_by_problem(name, run, manifest, omegaprm=name.startswith("omegaprm"))
        if name.startswith("omegaprm"):
            result["costs"] = omegaprm_costs(read_table(run / "evidence" / "omegaprm_nodes", "part-*.parquet"))
            first_error = [r for r in rows if json.loads(r["meta"])["kind"] == "first_error"]
            result["labels"] = [
                summarize("first_error_paths", first_error, samples, tokens),
                summarize("first_error_and_correct_rollout_paths", rows, samples, tokens),
            ]
            candidates.append(Labeller(f"{name} first_error_paths", first_error, samples))
            candidates.append(Labeller(f"{name} first_error_and_correct_rollout_paths", rows, samples))
        else:
            result["labels"] = [summarize("all_steps", rows, samples, tokens)]
            baselines.append(Labeller(name, rows, samples))
        if not args.no_raw:
            made.ensure_warm(config)
            result.update(raw_ratio(run, run_requests(run, config), tokens, config))
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
