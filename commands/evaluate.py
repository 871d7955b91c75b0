"""`evaluate`: score annotator configs on human or exact step labels before spending GPU hours.

- `processbench`: first-error accuracy on erroneous and on correct solutions and their F1, exactly as ProcessBench
  computes them (docs/labellers.md §1.1), for every configured verifier and for the judge when it is on.
- `prm800k`: PRM800K phase-1 human step ratings: accuracy and AUROC of +1 vs −1; neutral (0) ratings follow a
  stated rule (`--neutral exclude|positive|negative`, default exclude).
- `exact`: a run on the arithmetic domain against the exact step truth (first-error agreement and step accuracy).

With `--prm CKPT` the same benchmarks (and `bestofn`) score a trained process reward model instead
(`commands.evaluate_prm`).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from annotators.evaluation import (
    DEFAULT_DATA,
    auroc,
    load_processbench,
    prm800k_pairs,
    processbench_scores,
    step_accuracy,
)
from annotators.exact import exact_quality
from annotators.labelling import make_verifier
from annotators.rounding import round_scores
from annotators.verifiers.base import first_flagged
from schemas.config import Config, ConfigError, load_config


def _verifiers(config: Config) -> dict[str, Any]:
    names = config.annotators or {"arithmetic": {}}
    return {name: make_verifier(name, opts) for name, opts in sorted(names.items())}


def _problem(pid: str, question: str, domain: str = "math"):
    from schemas.records import Problem

    return Problem(problem_id=pid, question=question, answer="", domain=domain)


def judge_first_errors(config: Config, items: list[tuple[str, str, list[str]]]) -> list[int | None]:
    """The judge's voted first error for each (id, problem, steps), through the judge engine."""
    from annotators.judge import CRITIQUE_TEMPLATE, judge_search
    from engines import get_engine
    from engines.driver import run_searches
    from engines.prompts import PromptRenderer
    from schemas.config import sampling_params

    engine_config = config.judge_engine()
    renderer = PromptRenderer(engine_config)
    judge = config.judge
    searches = [
        judge_search(
            pid,
            problem,
            steps,
            judge.samples,
            sampling_params(judge.sampling),
            config.run.seed,
            renderer.render_user,
            parser=judge.parser,
            key=f"evaluate/{pid}",
            template=judge.template or CRITIQUE_TEMPLATE,
        )  # fmt: skip
        for pid, problem, steps in items
    ]
    outcomes, _ = run_searches(searches, get_engine(engine_config), attempts=engine_config.max_retries)
    return [o.result.first_error if o.error is None else None for o in outcomes]


def evaluate_processbench(config: Config, path: Path, limit: int | None = None) -> dict[str, Any]:
    rows = load_processbench(path)[:limit]
    labels = [int(r["label"]) for r in rows]
    annotators: dict[str, Any] = {}
    for name, verifier in _verifiers(config).items():
        preds = [first_flagged(verifier.verify(_problem(str(r["id"]), r["problem"]), list(r["steps"]))) for r in rows]
        annotators[name] = round_scores(processbench_scores(preds, labels))
    if config.judge.enabled:
        preds = judge_first_errors(config, [(str(r["id"]), r["problem"], list(r["steps"])) for r in rows])
        annotators["judge"] = round_scores({**processbench_scores(preds, labels), "no_verdict": preds.count(None)})
    return {
        "benchmark": "processbench",
        "data": str(path),
        "n": len(rows),
        "annotators": annotators,
        "baseline_all_correct": round_scores(processbench_scores([-1] * len(rows), labels)),
    }


def evaluate_prm800k(config: Config, path: Path, neutral: str = "exclude", limit: int | None = None) -> dict[str, Any]:
    """Verifier verdicts on PRM800K's rated steps: score True = 1, cannot check = 0.5, False = 0."""
    if neutral not in ("exclude", "positive", "negative"):
        raise ConfigError(f"--neutral: {neutral!r} is not one of exclude, positive, negative")
    pairs = list(prm800k_pairs(path))[:limit]
    kept = [(q, prev, step, rating) for q, prev, step, rating in pairs if rating != 0 or neutral != "exclude"]
    truths = [rating > 0 or (rating == 0 and neutral == "positive") for *_, rating in kept]
    annotators = {}
    for name, verifier in _verifiers(config).items():
        verdicts = [
            verifier.verify(_problem(f"prm800k-{i}", q), [*prev, step])[-1].verdict
            for i, (q, prev, step, _) in enumerate(kept)
        ]
        scores = [1.0 if v is True else 0.0 if v is False else 0.5 for v in verdicts]
        checked = [(v, t) for v, t in zip(verdicts, truths, strict=True) if v is not None]
        flagged = [t for v, t in checked if v is False]
        annotators[name] = round_scores(
            {
                "accuracy_where_checked": step_accuracy([v for v, _ in checked], [t for _, t in checked])
                if checked
                else math.nan,
                "coverage": len(checked) / len(kept) if kept else math.nan,
                "auroc": auroc(scores, truths) if 0 < sum(truths) < len(truths) else math.nan,
                "flags": len(flagged),
                "flag_precision": (len(flagged) - sum(flagged)) / len(flagged) if flagged else math.nan,
            }
        )
    return {
        "benchmark": "prm800k-phase1",
        "data": str(path),
        "pairs": len(pairs),
        "scored": len(kept),
        "neutral": neutral,
        "positives": sum(truths),
        "annotators": annotators,
    }


def evaluate_run(run: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    rows = [r for p in sorted((run / "data").glob("train-*.parquet")) for r in pq.read_table(p).to_pylist()]
    return {"benchmark": "exact-arithmetic", "run": str(run), "annotators": exact_quality(rows)}


def cmd_evaluate(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    if getattr(args, "prm", None) or getattr(args, "orm", None) or args.benchmark == "bestofn":
        from commands.evaluate_prm import cmd_evaluate_prm

        return _print_report(cmd_evaluate_prm(args), args.output)
    config = load_config(args.config, args.set) if args.config else None
    if config is None:
        from schemas.config import config_from_dict

        config = config_from_dict({"input": {"path": "-"}, "policy": {"model": "models/tiny-arith"}}, args.set)
    if args.benchmark == "exact":
        if not args.run:
            raise ConfigError("--run: the exact benchmark scores a finished run on the arithmetic domain")
        from pipelines.manifest import finished_run

        report = evaluate_run(finished_run(args.run, "--run"))
    else:
        path = Path(args.data) if args.data else DEFAULT_DATA[args.benchmark]
        if not path.exists():
            raise ConfigError(f"--data: {path} not found (the default needs ../shared/data beside the repo)")
        if args.benchmark == "processbench":
            report = evaluate_processbench(config, path, args.limit)
        else:
            report = evaluate_prm800k(config, path, args.neutral, args.limit)
    return _print_report(report, args.output)


def _print_report(report: dict[str, Any], output: str | None) -> int:
    text = json.dumps(report, indent=2, sort_keys=True)
    if output:
        Path(output).write_text(text + "\n")
    print(text)
    return 0


def add_evaluate_commands(subparsers: Any) -> None:
    from commands.evaluate_prm import add_prm_arguments

    parser = subparsers.add_parser(
        "evaluate", help="score annotators on ProcessBench, PRM800K or exact arithmetic truth"
    )
    parser.add_argument("--benchmark", choices=("processbench", "prm800k", "exact", "bestofn"), default="processbench")
    parser.add_argument(
        "--config",
        help="annotator config (its annotators: and judge: sections); default: arithmetic. "
        "With bestofn: the policy config (default: configs/demo.yaml)",
    )
    parser.add_argument("--data", help="benchmark file (default: ../shared/data/...)")
    parser.add_argument(
        "--run", help="with --benchmark exact: the run folder to score; with --prm: also write RUN/evaluation/"
    )
    parser.add_argument("--limit", type=int, default=None, help="score only the first N items")
    parser.add_argument("--neutral", default="exclude", help="PRM800K neutral ratings: exclude|positive|negative")
    parser.add_argument("--output", help="also write the JSON report here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    add_prm_arguments(parser)
    parser.set_defaults(func=cmd_evaluate)
