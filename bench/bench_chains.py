"""Cost and label quality of OmegaPRM against per-step MC by chain length, on the long-chain domain.

    .venv/bin/python bench/bench_chains.py                           # 1000 chains; MC k=4..32; OmegaPRM k=4, 8
    .venv/bin/python bench/bench_chains.py --work runs/bench-chains  # resume: finished runs there are read back

The setting comes first and is printed with the figures: the problems (`domains/chains.py`, M = 4..32
operations, their count and seed), the policy (`--model`, default models/tiny-chain) with the sha256 of its
weights and of its `recipe/` files (`recipe_sha256`: one sha256 over the sorted recipe files), and the seeds.
Every method is a real pipeline run on the same problems and seeds (configs/chains_mc.yaml for MC at each
`--mc-k`, configs/chains_omegaprm.yaml for OmegaPRM at each `--omegaprm-k`, with its correct-rollout paths).

By bucket of M (4-7, 8-15, 16-32), for each run: samples per distinct labelled step as generated (a prefix
several solutions share is sampled once) under the three countings of `annotators/cost.py` ((a) emitted,
(b) decided, (c) measured; docs/omegaprm.md); first-error agreement with the exact first error, over all rows and
by claim (`annotators/compare.py`); ProcessBench's F1 (the harmonic mean of the accuracy on erroneous paths, where
the predicted first error must be the true one, and on correct paths, where it must be "no error"); and how often
a sampled solution with a wrong step still reaches the gold answer (a compensated slip, `domains.chains`).

Matched quality, per bucket and OmegaPRM run: each MC run on the problems OmegaPRM labelled in that bucket, with
paired bootstrap intervals over problems of the F1 difference and of the agreement difference by claim; the
dearest MC run OmegaPRM is not significantly worse than on F1 (the 95% interval of OmegaPRM minus MC reaches 0);
and MC's cost per labelled step over OmegaPRM's there, under each counting (OmegaPRM pays every sample it drew in
the bucket, the root estimates of questions it dropped included). Beside it, docs/omegaprm.md's cost model, whose
(b) saving is (M - 1) / ceil(log2 M); `--plot` gets the ratio against M as a PNG.

Throughput: generated tokens/s of each run's search stage against one raw `vllm.LLM.generate` of the same requests
(`--no-raw` skips the replays). JSON goes to stdout; readable tables to stderr after it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    COMPLETION_KEYS,
    Runs,
    demo_config,
    engine_figures,
    file_sha256,
    omegaprm_costs,
    policy_fingerprint,
    raw_ratio,
    read_problems,
    read_table,
    rollout_budget,
    run_requests,
    samples_by_problem,
    search_stage_wall,
    write_problems,
)

from annotators.compare import (
    MEASURES,
    agreement,
    bootstrap_draws,
    mc_assumption,
    paired_bootstrap,
    paired_difference,
    tally,
)
from annotators.cost import COUNTINGS, StepCounts, mc_step_counts, omegaprm_table_counts, total
from annotators.evaluation import processbench_scores
from annotators.exact import exact_first_error_of
from annotators.mc import generated_completions
from annotators.rounding import round_figure
from annotators.steps import split_steps
from domains import chains

BUCKETS: tuple[tuple[int, int], ...] = ((4, 7), (8, 15), (16, 32))
BOOTSTRAP_DRAWS, BOOTSTRAP_SEED = 2000, 0
F1Tally = dict[
    str, list[int]
]  # problem -> [erroneous paths right, erroneous paths, correct paths right, correct paths]


# ----------------------------------------------------------------------------------------------- pure pieces


def bucket_name(bucket: tuple[int, int]) -> str:
    return f"{bucket[0]}-{bucket[1]}"


def bucket_of(num_steps: int, buckets: Sequence[tuple[int, int]] = BUCKETS) -> str | None:
    """The name of the bucket holding chain length `num_steps` ("8-15"), None outside every bucket."""
    return next((bucket_name(b) for b in buckets if b[0] <= num_steps <= b[1]), None)


def predicted_saving(num_steps: int) -> dict[str, float]:
    """MC's cost per labelled step over OmegaPRM's for one M-step rollout, under each counting (docs/omegaprm.md,
    "A cost model"): MC pays k(M - 1) for M steps; OmegaPRM pays k per probe, P = ceil(log2 M) probes, and labels
    (a) (M + 1) / 2 steps on average, (b) all M, (c) P probe states and one terminal state."""
    m = num_steps
    probes = math.ceil(math.log2(m))
    return {
        "emitted": (m * m - 1) / (2 * m * probes),
        "decided": (m - 1) / probes,
        "measured": (m - 1) * (probes + 1) / (m * probes),
    }


def path_truth(row: Mapping[str, Any]) -> int | None:
    """The exact first error of a labelled row (-1: none); a path cut after its first error is checked on its own
    steps only. None outside the arithmetic domain."""
    complete = not row.get("truncated_after_first_error", False)
    return exact_first_error_of(row["prompt"], list(row["completions"]), complete=complete)


def f1_tally(rows: Iterable[Mapping[str, Any]], key: str = "first_error_index") -> F1Tally:
    """ProcessBench's counts by problem: erroneous paths (true first error >= 0) whose predicted first error is the
    true one, and correct paths predicted to have none."""
    out: F1Tally = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        truth = path_truth(row)
        if truth is None:
            continue
        counts = out[str(row["problem_id"])]
        if truth >= 0:
            counts[0] += int(row[key] == truth)
            counts[1] += 1
        else:
            counts[2] += int(row[key] == -1)
            counts[3] += 1
    return out


def f1_of(counts: Sequence[int]) -> float | None:
    """F1 from summed [erroneous right, erroneous, correct right, correct] (ProcessBench's, as
    `annotators.evaluation.processbench_scores` computes it); None where a kind of path is missing."""
    err_right, err, cor_right, cor = counts
    if not err or not cor:
        return None
    acc_err, acc_cor = err_right / err, cor_right / cor
    return 2 * acc_err * acc_cor / (acc_err + acc_cor) if acc_err + acc_cor else 0.0


def summed(counts: F1Tally, problems: Iterable[str]) -> list[int]:
    """Counts over `problems` (a problem listed twice counts twice: bootstrap draws)."""
    out = [0, 0, 0, 0]
    for problem in problems:
        for i, value in enumerate(counts.get(problem, (0, 0, 0, 0))):
            out[i] += value
    return out


def processbench(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """acc_err, acc_cor, F1 and the path counts of labelled rows against exact truth (None for NaN)."""
    preds, labels = [], []
    for row in rows:
        truth = path_truth(row)
        if truth is not None:
            preds.append(row["first_error_index"])
            labels.append(truth)
    scores = processbench_scores(preds, labels)
    return {k: round_figure(v) for k, v in scores.items()}  # NaN becomes None


def paired_f1_difference(
    a: F1Tally, b: F1Tally, problems: list[str], drawn: list[list[str]]
) -> dict[str, float | None]:
    """F1 of `a` minus that of `b` on `problems`, with the 95% percentile interval over `drawn` resamples of the
    problems (`annotators.compare.paired_bootstrap`; resamples missing a kind of path are left out)."""
    return paired_bootstrap(
        lambda sample: f1_of(summed(a, sample)), lambda sample: f1_of(summed(b, sample)), problems, drawn
    )


def cost_per_step(
    samples: Mapping[str, int], counts: Mapping[str, StepCounts], problems: Iterable[str]
) -> dict[str, float | None]:
    """Samples per distinct labelled step over `problems`, under each counting (None where nothing is labelled)."""
    problems = list(problems)
    steps = total(counts[p] for p in problems if p in counts)
    return {k: round_figure(v, 3) for k, v in steps.per_step(sum(samples.get(p, 0) for p in problems)).items()}


@dataclass(frozen=True)
class Method:
    """One run's labelled rows, samples, generated tokens and labelled steps by problem, and the solutions it
    sampled from the question alone (problem id, text, extracted answer)."""

    name: str
    k: int
    omegaprm: bool
    rows: Mapping[str, list[Mapping[str, Any]]]
    samples: Mapping[str, int]
    tokens: Mapping[str, int]
    steps: Mapping[str, StepCounts]
    solutions: Sequence[tuple[str, str, str | None]] = ()


def compensated_slips(
    solutions: Iterable[tuple[str, str, str | None]], problems: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Of sampled solutions: how many have a wrong step, how many reach the gold answer, and how many do both (a
    later slip undid the error, `domains.chains.compensated`: where "MC > 0 means the prefix is right" fails)."""
    solutions = list(solutions)
    wrong = gold = both = 0
    for problem_id, text, answer in solutions:
        problem = problems[problem_id]
        steps = chains.split_steps(text)
        wrong += chains.exact_first_error(problem["expression"], steps) >= 0
        gold += answer is not None and answer == problem["answer"]
        both += chains.compensated(problem["expression"], steps, answer, problem["answer"])
    return {
        "solutions": len(solutions),
        "with_a_wrong_step": wrong,
        "reaching_gold": gold,
        "compensated": both,
        "compensated_of_wrong": round_figure(both / wrong if wrong else None),
        "compensated_of_gold": round_figure(both / gold if gold else None),
    }


def summarize_bucket(method: Method, problems: list[str], all_problems: Mapping[str, Mapping[str, Any]]) -> dict:
    """One run's figures on one bucket's problems (its own rows there)."""
    rows = [r for p in problems for r in method.rows.get(p, [])]
    steps = total(method.steps[p] for p in problems if p in method.steps)
    samples = sum(method.samples.get(p, 0) for p in problems)
    tokens = sum(method.tokens.get(p, 0) for p in problems)
    claims = tally(rows)
    labelled = [p for p in problems if method.rows.get(p)]
    inside = set(problems)
    return {
        "problems_labelled": len(labelled),
        "paths": len(rows),
        "samples": samples,
        "generated_tokens": tokens,
        "labelled_steps": {c: getattr(steps, c) for c in COUNTINGS},
        "samples_per_step": {c: round_figure(v, 3) for c, v in steps.per_step(samples).items()},
        "tokens_per_step": {c: round_figure(v, 1) for c, v in steps.per_step(tokens).items()},
        "first_error_agreement": {m: round_figure(agreement(claims, labelled, m)) for m in MEASURES},
        "processbench": processbench(rows),
        "compensated_slips": compensated_slips((s for s in method.solutions if s[0] in inside), all_problems),
    }


def matched_in_bucket(
    candidate: Method, baselines: Sequence[Method], problems: list[str], draws: int = BOOTSTRAP_DRAWS
) -> dict[str, Any]:
    """The candidate against each baseline on the bucket's problems the candidate labelled: F1 and agreement by claim
    with paired bootstrap intervals, cost ratios under each counting, and the dearest baseline (by cost per
    decided step) the candidate is not significantly worse than on F1 (`not_significantly_worse`: the interval's
    upper end >= 0) or at least as good as by the estimates (`point`)."""
    labelled = sorted(p for p in problems if candidate.rows.get(p))
    cost = cost_per_step(candidate.samples, candidate.steps, problems)  # every sample it drew in the bucket
    mine_f1 = f1_tally(r for p in labelled for r in candidate.rows[p])
    mine_claims = tally(r for p in labelled for r in candidate.rows[p])
    drawn = bootstrap_draws(labelled, draws, BOOTSTRAP_SEED) if labelled else []
    rows = []
    for base in baselines:
        theirs = [r for p in labelled for r in base.rows.get(p, [])]
        theirs_f1, theirs_claims = f1_tally(theirs), tally(theirs)
        base_cost = cost_per_step(base.samples, base.steps, labelled)
        rows.append(
            {
                "baseline": base.name,
                "samples_per_step": base_cost,
                "f1": round_figure(f1_of(summed(theirs_f1, labelled))),
                "f1_difference": paired_f1_difference(mine_f1, theirs_f1, labelled, drawn),
                "agreement_difference": {
                    m: paired_difference(mine_claims, theirs_claims, labelled, m, drawn=drawn)
                    for m in ("error_claims", "no_error_claims")
                },
                "cost_ratio": {c: _ratio(base_cost[c], cost[c]) for c in COUNTINGS},
            }
        )
    not_worse = [r for r in rows if r["f1_difference"]["high"] is not None and r["f1_difference"]["high"] >= 0]
    point = [r for r in rows if r["f1_difference"]["difference"] is not None and r["f1_difference"]["difference"] >= 0]
    undefined = [r["baseline"] for r in rows if r["f1_difference"]["difference"] is None]
    return {
        "candidate": candidate.name,
        "problems_labelled": len(labelled),
        "samples_per_step": cost,
        "f1": round_figure(f1_of(summed(mine_f1, labelled))),
        "baselines": rows,
        "not_significantly_worse": dearest(not_worse, labelled, undefined, len(rows)),
        "point": dearest(point, labelled, undefined, len(rows)),
    }


def dearest(rows: list[dict[str, Any]], labelled: list[str], undefined: list[str], baselines: int) -> dict[str, Any]:
    """The dearest baseline of `rows` by samples per decided step, and its cost ratios; when there is none, why
    (`undefined`: those of the `baselines` whose F1 difference is undefined on the `labelled` problems)."""
    priced = [r for r in rows if r["samples_per_step"]["decided"] is not None]
    if priced:
        best = max(priced, key=lambda r: r["samples_per_step"]["decided"])
        return {"baseline": best["baseline"], "cost_ratio": best["cost_ratio"]}
    if not labelled:
        reason = "OmegaPRM labelled no problem here"
    elif rows:
        reason = "no labelled step priced"
    elif undefined:
        others = "worse than every other MC run; " if len(undefined) < baselines else ""
        reason = f"{others}F1 undefined (no correct or no erroneous path) for {', '.join(undefined)}"
    else:
        reason = "worse than every MC run"
    return {"baseline": None, "cost_ratio": None, "reason": reason}


def ratio_table(buckets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per bucket and OmegaPRM run: the matched-quality cost ratio (not significantly worse) under each
    counting beside the cost model's prediction, averaged over the bucket's chain lengths."""
    table = []
    for bucket in buckets:
        for matched in bucket["matched"]:
            verdict = matched["not_significantly_worse"]
            table.append(
                {
                    "bucket": bucket["bucket"],
                    "mean_m": bucket["mean_m"],
                    "candidate": matched["candidate"],
                    "problems_labelled": matched["problems_labelled"],
                    "baseline": verdict["baseline"],
                    "ratio": verdict["cost_ratio"],
                    "reason": verdict.get("reason"),
                    "predicted": bucket["predicted_saving"],
                }
            )
    return table


def plot_ratios(table: list[dict[str, Any]], buckets: Sequence[tuple[int, int]], path: Path) -> Path:
    """The matched-quality cost ratio against M (points at a bucket's mean M, bars across its range) under each
    counting, beside the cost model's curves; the (b) curve is (M - 1) / ceil(log2 M)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    lengths = list(range(min(b[0] for b in buckets), max(b[1] for b in buckets) + 1))
    colours = {"emitted": "#1b9e77", "decided": "#d95f02", "measured": "#7570b3"}
    labels = {"emitted": "(a) emitted", "decided": "(b) decided", "measured": "(c) measured"}
    for counting, colour in colours.items():
        predicted = [predicted_saving(m)[counting] for m in lengths]
        name = "(M - 1) / ceil(log2 M)" if counting == "decided" else "model"
        axes.plot(
            lengths,
            predicted,
            color=colour,
            linewidth=2 if counting == "decided" else 1,
            alpha=0.6,
            drawstyle="steps-mid",
            label=f"{labels[counting]} {name}",
        )
    ranges = {bucket_name(b): b for b in buckets}
    markers = ["o", "s", "^", "D", "v"]
    candidates = sorted({row["candidate"] for row in table})
    plotted = 0
    for index, candidate in enumerate(candidates):
        marker, shift = markers[index % len(markers)], 0.3 * (index - (len(candidates) - 1) / 2)  # side by side
        for counting, colour in colours.items():
            points = [r for r in table if r["candidate"] == candidate and r["ratio"] and r["ratio"][counting]]
            if not points:
                continue
            x = [r["mean_m"] + shift for r in points]
            low = [xi - ranges[r["bucket"]][0] for xi, r in zip(x, points, strict=True)]
            high = [ranges[r["bucket"]][1] - xi for xi, r in zip(x, points, strict=True)]
            axes.errorbar(
                x,
                [r["ratio"][counting] for r in points],
                xerr=[low, high],
                fmt=marker,
                color=colour,
                capsize=3,
                label=f"{candidate} {labels[counting]}",
            )
            plotted += len(points)
    if not plotted:
        axes.text(
            0.5, 0.5, "no matched-quality ratio in any bucket", ha="center", va="center", transform=axes.transAxes
        )
    axes.axhline(1.0, color="#bdbdbd", linewidth=1)
    axes.set_xlabel("chain length M (operations)")
    axes.set_ylabel("MC samples per step / OmegaPRM's")
    axes.set_title("MC cost over OmegaPRM's at matched quality (F1 not significantly worse)", fontsize=10)
    axes.legend(fontsize=7, loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Software": None})
    return path


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator and denominator else None


# ----------------------------------------------------------------------------------------------- runs


def load_method(name: str, k: int, run: Path, manifest: dict, config) -> Method:
    """A finished run's rows, samples, tokens, labelled steps and root solutions, by problem."""
    omegaprm = config.search.method == "omegaprm"
    rows: dict[str, list[dict]] = defaultdict(list)
    for row in read_table(run / "data", "train-*.parquet"):
        rows[row["problem_id"]].append(row)
    samples = samples_by_problem(name, run, manifest, omegaprm=omegaprm)
    tokens: dict[str, int] = defaultdict(int)
    steps: dict[str, StepCounts] = {}
    if omegaprm:
        nodes: dict[str, list[dict]] = defaultdict(list)
        for node in read_table(run / "evidence" / "omegaprm_nodes", "part-*.parquet"):
            nodes[node["problem_id"]].append(node)
            tokens[node["problem_id"]] += sum(r["n_tokens"] or 0 for r in node["rollouts"])

        def split(text: str) -> tuple[list[str], list[int]]:
            return split_steps(text, config.steps.splitter, config.steps.pattern)

        for problem_id, problem_nodes in nodes.items():
            steps[problem_id] = omegaprm_table_counts(problem_id, problem_nodes, rows.get(problem_id, []), (), split)
        solutions = [
            (n["problem_id"], r["text"], r["extracted"])
            for problem_nodes in nodes.values()
            for n in problem_nodes
            if n["parent_id"] is None
            for r in n["rollouts"]
        ]
    else:
        sampled = read_table(run / "evidence" / "solutions", "part-*.parquet")
        completions = generated_completions(
            read_table(run / "evidence" / "completions", "part-*.parquet", [*COMPLETION_KEYS, "n_tokens"])
        )
        for sample in [*sampled, *completions]:
            tokens[sample["problem_id"]] += sample["n_tokens"] or 0
        steps = {problem_id: mc_step_counts(problem_rows) for problem_id, problem_rows in rows.items()}
        solutions = [(s["problem_id"], s["text"], s["final_answer"]) for s in sampled]
    return Method(name, k, omegaprm, dict(rows), samples, dict(tokens), steps, solutions)


def chain_configs(args: argparse.Namespace, problems: Path) -> list[tuple[str, int, Any]]:
    """(name, k, config) of every run: MC at each --mc-k, OmegaPRM at each --omegaprm-k, on the same problems."""
    common = ["cache.enabled=false", "output.num_shards=1", f"policy.model={args.model}"]
    for key, value in (
        ("search.problems_per_batch", args.problems_per_batch),
        ("search.sequences_in_flight", args.sequences_in_flight),
        ("search.driver", args.driver),
    ):
        if value is not None:
            common.append(f"{key}={value}")
    runs = []
    for k in _ks(args.mc_k):
        overrides = [*common, f"search.completions_per_step={k}"]
        if args.solutions is not None:
            overrides.append(f"search.num_solutions={args.solutions}")
        runs.append((f"mc_k{k}", k, demo_config(problems, [*overrides, *args.set], "chains_mc.yaml")))
    for k in _ks(args.omegaprm_k):
        overrides = [
            *common,
            f"search.completions_per_step={k}",
            f"search.omegaprm.search_limit={args.search_limit}",
            f"search.omegaprm.rollout_budget={args.rollout_budget}",
            "search.omegaprm.positive_paths=true",  # F1 needs paths that claim no error
        ]
        runs.append((f"omegaprm_k{k}", k, demo_config(problems, [*overrides, *args.set], "chains_omegaprm.yaml")))
    return runs


def _ks(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def setting(args: argparse.Namespace, problems_file: Path, problems: Mapping[str, Mapping], configs: list) -> dict:
    """What the comparison holds fixed: problems, policy, seeds, sampling, the methods' settings."""
    config = configs[0][2]
    lengths: dict[str, int] = defaultdict(int)
    for problem in problems.values():
        lengths[bucket_of(problem["num_steps"]) or "other"] += 1
    return {
        "problems": {
            "domain": "chains",
            "count": len(problems),
            "seed": args.seed,
            "chain_lengths": [args.min_steps, args.max_steps],
            "file": str(problems_file),
            "sha256": file_sha256(problems_file),
            "by_bucket": dict(lengths),
        },
        "policy": policy_fingerprint(args.model),
        "seeds": {"problems": args.seed, "run": config.run.seed, "bootstrap": BOOTSTRAP_SEED},
        "sampling": {
            "temperature": config.sampling.temperature,
            "top_p": config.sampling.top_p,
            "max_tokens": config.sampling.max_tokens,
        },
        "mc": {
            "k": _ks(args.mc_k),
            "solutions": next((c.search.num_solutions for n, _, c in configs if n.startswith("mc")), None),
        },
        "omegaprm": {
            "k": _ks(args.omegaprm_k),
            "search_limit": args.search_limit,
            "rollout_budget": args.rollout_budget,
            "positive_paths": True,
        },
        "bootstrap_draws": BOOTSTRAP_DRAWS,
        "overrides": args.set,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=1000, help="chains to label (M uniform in 4..32)")
    parser.add_argument("--seed", type=int, default=16, help="problem generator seed")
    parser.add_argument("--min-steps", type=int, default=chains.MIN_STEPS, help="shortest chain (operations)")
    parser.add_argument("--max-steps", type=int, default=chains.MAX_STEPS, help="longest chain (operations)")
    parser.add_argument("--model", default="models/tiny-chain", help="the policy (fixed, with its recipe, first)")
    parser.add_argument("--mc-k", default="4,8,16,32", help="completions per step of the MC search, one run each")
    parser.add_argument("--omegaprm-k", default="4,8", help="rollouts per MC estimate of OmegaPRM, one run each")
    parser.add_argument("--solutions", type=int, default=None, help="MC solutions per problem (preset: 4)")
    parser.add_argument("--search-limit", type=int, default=100)
    parser.add_argument(
        "--rollout-budget", type=rollout_budget, default="auto", help="completions per question: auto or a number"
    )
    parser.add_argument("--problems-per-batch", type=int, default=None, help="search.problems_per_batch (preset's)")
    parser.add_argument("--sequences-in-flight", type=int, default=None, help="search.sequences_in_flight")
    parser.add_argument("--driver", default=None, choices=("rounds", "requests"), help="search.driver")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    parser.add_argument("--warm-up", type=int, default=16, help="chains of the untimed warm-up call (0: none)")
    parser.add_argument(
        "--work", help="folder of the runs; a run already there with the same config and weights is read back"
    )
    parser.add_argument("--plot", type=Path, default=None, help="the ratio PNG (default: WORK/cost_ratio_by_m.png)")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw-generate replays")
    args = parser.parse_args()

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-chains-"))
    print(f"runs under {work}", file=sys.stderr)
    # Named by what makes them: a run in --work is read back only when its problems are the same ones.
    problems_file = write_problems(
        work / f"chains-{args.problems}-seed{args.seed}-m{args.min_steps}-{args.max_steps}.jsonl",
        args.problems,
        args.seed,
        min_steps=args.min_steps,
        max_steps=args.max_steps,
        domain="chains",
    )
    configs = chain_configs(args, problems_file)
    problems = read_problems(configs[0][2])
    fixed = setting(args, problems_file, problems, configs)
    if fixed["policy"]["recipe_sha256"] is None:
        print(f"warning: {args.model} has no recipe/ folder: the policy is not fixed by a recipe", file=sys.stderr)

    made = Runs(work, args.warm_up, domain="chains")
    methods: list[Method] = []
    runs = []
    for name, k, config in configs:
        run, manifest, search_step_fill = made.run(name, config)
        method = load_method(name, k, run, manifest, config)
        tokens = manifest["engine"]["generated_tokens"]
        result = {
            "method": name,
            "k": k,
            "code_version": manifest["code_version"],
            "manifest_model_sha256": manifest["engine"]["model_sha256"],  # config and weights (pipelines/manifest)
            "samples": sum(method.samples.values()),
            "generated_tokens": tokens,
            "search_stage_wall_s": round(search_stage_wall(run), 2),
            "search_stage_tokens_per_s": round(tokens / search_stage_wall(run), 1),
            **engine_figures(manifest),
            "mc_assumption": mc_assumption(r for rows in method.rows.values() for r in rows),
        }
        if search_step_fill is not None:  # only for a run made now, not one read back from --work
            result["search_step_fill"] = search_step_fill
        if method.omegaprm:
            result["costs"] = omegaprm_costs(read_table(run / "evidence" / "omegaprm_nodes", "part-*.parquet"))
            result["omegaprm_counters"] = manifest["engine"].get("omegaprm_counters")
        if not args.no_raw:
            made.ensure_warm(config)
            result.update(raw_ratio(run, run_requests(run, config), tokens, config))
        runs.append(result)
        methods.append(method)

    baselines = [m for m in methods if not m.omegaprm]
    buckets = []
    for bucket in BUCKETS:
        inside = sorted(p for p, problem in problems.items() if bucket_of(problem["num_steps"], [bucket]))
        lengths = [problems[p]["num_steps"] for p in inside]
        predicted = [predicted_saving(m) for m in lengths]
        buckets.append(
            {
                "bucket": bucket_name(bucket),
                "problems": len(inside),
                "mean_m": round(sum(lengths) / len(lengths), 2) if lengths else None,
                "predicted_saving": {
                    c: round(sum(p[c] for p in predicted) / len(predicted), 3) if predicted else None for c in COUNTINGS
                },
                "methods": {m.name: summarize_bucket(m, inside, problems) for m in methods},
                "matched": [matched_in_bucket(m, baselines, inside) for m in methods if m.omegaprm],
            }
        )
    table = ratio_table(buckets)
    plot = plot_ratios(table, BUCKETS, args.plot or work / "cost_ratio_by_m.png")
    figures = {"setting": fixed, "runs": runs, "buckets": buckets, "ratio_table": table, "plot": str(plot)}
    print(json.dumps(figures, indent=2))
    print(readable(figures), file=sys.stderr)


def readable(figures: dict[str, Any]) -> str:
    """The figures as tables: setting, cost and quality by bucket, matched-quality ratios, slips, throughput."""
    fixed = figures["setting"]
    policy = fixed["policy"]
    weights = ", ".join(f"{name} {sha[:12]}" for name, sha in policy["weights"].items()) or "none"
    recipe = (policy["recipe_sha256"] or "none")[:12]
    lines = [
        f"setting: {fixed['problems']['count']} chains (seed {fixed['problems']['seed']}, "
        f"{fixed['problems']['by_bucket']}); policy {policy['model']} (weights {weights}; recipe_sha256 {recipe}); "
        f"run seed {fixed['seeds']['run']}; MC k {fixed['mc']['k']} x {fixed['mc']['solutions']} solutions; "
        f"OmegaPRM k {fixed['omegaprm']['k']}, search limit {fixed['omegaprm']['search_limit']}, "
        f"rollout budget {fixed['omegaprm']['rollout_budget']}",
        "",
        "bucket | method | labelled problems | samples/step (a) / (b) / (c) | tokens/step (b) | "
        "agreement all / error / no-error claims | acc_err / acc_cor / F1",
    ]
    for bucket in figures["buckets"]:
        for name, m in bucket["methods"].items():
            s, a, pb = m["samples_per_step"], m["first_error_agreement"], m["processbench"]
            lines.append(
                f"{bucket['bucket']} | {name} | {m['problems_labelled']}/{bucket['problems']} | "
                f"{s['emitted']} / {s['decided']} / {s['measured']} | {m['tokens_per_step']['decided']} | "
                f"{a['all']} / {a['error_claims']} / {a['no_error_claims']} | "
                f"{pb['acc_err']} / {pb['acc_cor']} / {pb['f1']}"
            )
    lines += [
        "",
        "bucket (mean M) | OmegaPRM | dearest MC run not significantly worse on F1 | ratio (a) / (b) / (c) | "
        "predicted (a) / (b) = (M-1)/ceil(log2 M) / (c)",
    ]
    for row in figures["ratio_table"]:
        r, p = row["ratio"] or {}, row["predicted"]
        lines.append(
            f"{row['bucket']} ({row['mean_m']}) | {row['candidate']} | {row['baseline'] or 'none: ' + row['reason']} | "
            f"{r.get('emitted')} / {r.get('decided')} / {r.get('measured')} | "
            f"{p['emitted']} / {p['decided']} / {p['measured']}"
        )
    lines += ["", "bucket | method | sampled solutions | with a wrong step | reaching gold | compensated slips"]
    for bucket in figures["buckets"]:
        for name, m in bucket["methods"].items():
            c = m["compensated_slips"]
            lines.append(
                f"{bucket['bucket']} | {name} | {c['solutions']} | {c['with_a_wrong_step']} | {c['reaching_gold']} | "
                f"{c['compensated']} ({c['compensated_of_wrong']} of wrong, {c['compensated_of_gold']} of gold)"
            )
    lines += ["", "method | samples | generated tokens | search-stage tok/s | raw tok/s | ratio"]
    for run in figures["runs"]:
        lines.append(
            f"{run['method']} | {run['samples']} | {run['generated_tokens']} | {run['search_stage_tokens_per_s']} | "
            f"{run.get('raw_tokens_per_s', 'skipped')} | {run.get('ratio_search_to_raw', 'skipped')}"
        )
    lines.append(f"plot: {figures['plot']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
