"""`run.py evaluate --prm CKPT`: a trained process reward model on step labels and as a best-of-N picker.

- `processbench`: the PRM's first errors (first step scored below `--threshold`) -> ProcessBench F1, in the
  verifier scores' JSON shape (`annotators: {prm name: scores}`), plus the step AUROC.
- `prm800k`: AUROC and accuracy at the threshold of the rated step's score against PRM800K's ratings (the same
  neutral rule as the verifiers).
- `exact --run RUN`: a run's arithmetic paths against the exact first error -> F1 and step AUROC.
- `bestofn --problems FILE`: S policy samples per held-out problem (cached in a JSONL), picked by the PRM (min
  over steps, last step), an ORM (its last-step score), majority vote, a random pick and pass@N, with bootstrap
  intervals (`prm.bestofn`); step-level figures against the exact truth when the problems are arithmetic.

With `--run RUN` each PRM's result also goes to `RUN/evaluation/<benchmark>-<prm name>.json`, which
`run.py report RUN` shows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

from annotators.evaluation import (
    DEFAULT_DATA,
    auroc,
    load_processbench,
    prm800k_pairs,
    processbench_scores,
    step_accuracy,
)
from annotators.exact import arithmetic_expression, exact_first_error_of
from annotators.rounding import round_scores
from prm.bestofn import BOOTSTRAP_RESAMPLES, DEFAULT_NS, best_of_n, step_level_scores, within_problem_auroc
from schemas.config import Config, ConfigError, canonical_json, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
SAMPLES_FORMAT = "stepforge-bestofn-samples/1"
TIE_BREAK = "highest score wins; equal scores go to the lowest sample index; unscored samples rank last"


class Scorer(Protocol):
    """What evaluation needs of a PRM (`prm.score.PRM`): a name and P(step is right) per step."""

    name: str

    def score_batch(self, items: list[tuple[str, list[str]]], batch_size: int = 32) -> list[list[float]]: ...


def load_scorer(path: str) -> Scorer:
    """A trained PRM or ORM checkpoint; torch is imported only here (tests replace this function)."""
    from prm.score import PRM

    return PRM.from_pretrained(path)


def checkpoints(values: list[str] | None) -> list[str]:
    """`--prm a --prm b,c` -> [a, b, c]."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


# ---------------------------------------------------------------- step level on benchmark files


def prm_processbench(scorers: list[Scorer], path: Path, threshold: float, limit: int | None = None) -> dict[str, Any]:
    """ProcessBench F1 of each PRM's thresholded first errors (the shape `evaluate_processbench` writes)."""
    rows = load_processbench(path)[:limit]
    labels = [int(r["label"]) for r in rows]
    items = [(r["problem"], list(r["steps"])) for r in rows]
    return {
        "benchmark": "processbench",
        "data": str(path),
        "n": len(rows),
        "threshold": threshold,
        "annotators": {
            s.name: round_scores(step_level_scores(s.score_batch(items), labels, threshold)) for s in scorers
        },
        "baseline_all_correct": round_scores(processbench_scores([-1] * len(rows), labels)),
    }


def rated_steps(path: Path, neutral: str, limit: int | None) -> tuple[int, list[tuple[str, list[str]]], list[bool]]:
    """(pairs read, (question, steps through the rated one) kept, truths) under the verifiers' neutral rule."""
    if neutral not in ("exclude", "positive", "negative"):
        raise ConfigError(f"--neutral: {neutral!r} is not one of exclude, positive, negative")
    pairs = list(prm800k_pairs(path))[:limit]
    kept = [(q, prev, step, rating) for q, prev, step, rating in pairs if rating != 0 or neutral != "exclude"]
    truths = [rating > 0 or (rating == 0 and neutral == "positive") for *_, rating in kept]
    return len(pairs), [(q, [*prev, step]) for q, prev, step, _ in kept], truths


def prm_prm800k(
    scorers: list[Scorer], path: Path, threshold: float, neutral: str = "exclude", limit: int | None = None
) -> dict[str, Any]:
    """AUROC and thresholded accuracy of each PRM's score of the rated step against PRM800K's ratings."""
    n_pairs, items, truths = rated_steps(path, neutral, limit)
    annotators = {}
    for scorer in scorers:
        last = [scores[-1] if scores else math.nan for scores in scorer.score_batch(items)]
        predictions = [None if math.isnan(s) else s >= threshold for s in last]
        annotators[scorer.name] = round_scores(
            {
                "auroc": auroc(last, truths),
                "accuracy": step_accuracy(predictions, truths) if truths else math.nan,
                "predicted_right": sum(p is True for p in predictions),
                "threshold": threshold,
            }
        )
    return {
        "benchmark": "prm800k-phase1",
        "data": str(path),
        "pairs": n_pairs,
        "scored": len(items),
        "neutral": neutral,
        "positives": sum(truths),
        "annotators": annotators,
    }


def prm_exact(scorers: list[Scorer], run: Path, threshold: float) -> dict[str, Any]:
    """Each PRM on a run's arithmetic paths against the exact first error: F1 and step AUROC."""
    import pyarrow.parquet as pq

    columns = ["prompt", "completions", "truncated_after_first_error"]
    rows = [
        r
        for p in sorted((run / "data").glob("train-*.parquet"))
        for r in pq.read_table(p, columns=[c for c in columns if c in pq.read_schema(p).names]).to_pylist()
        if arithmetic_expression(r["prompt"]) is not None
    ]
    firsts = [
        exact_first_error_of(r["prompt"], list(r["completions"]), complete=not r.get("truncated_after_first_error"))
        for r in rows
    ]
    items = [(r["prompt"], list(r["completions"])) for r in rows]
    annotators = {
        s.name: round_scores({**step_level_scores(s.score_batch(items), firsts, threshold), "n_paths": len(rows)})
        for s in scorers
    }
    return {"benchmark": "exact-arithmetic", "run": str(run), "threshold": threshold, "annotators": annotators}


# ---------------------------------------------------------------- best-of-N: samples


def answer_key(answer: str | None) -> str | None:
    """One spelling per value, so a vote counts `1,000`, `1000` and `1000.0` as one answer."""
    if answer is None or not answer.strip():
        return None
    text = answer.strip()
    try:
        return str(Fraction(text.replace(",", "")))
    except (ValueError, ZeroDivisionError):
        return text


def read_problems(path: Path, config: Config) -> list[dict[str, str]]:
    """Held-out problems from a JSONL file, through the config's input fields, id field and answer format."""
    from annotators.answers import parse_reference_answer

    fields = config.input.fields
    problems = []
    for position, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        row = json.loads(line)
        problem_id = str(row.get(config.input.id_field or "problem_id", f"problem-{position}"))
        gold = parse_reference_answer(str(row[fields["answer"]]), config.input.answer_format)
        problems.append({"problem_id": problem_id, "question": row[fields["question"]], "answer": gold or ""})
    if not problems:
        raise ConfigError(f"--problems: {path} holds no problems")
    return problems


def generation_hash(config: Config) -> str:
    """sha256 of what the samples depend on: seed, policy, sampling, step splitter, answer rules."""
    full = config.to_dict()
    part = {"seed": full["run"]["seed"], **{k: full[k] for k in ("policy", "sampling", "steps", "answers")}}
    return hashlib.sha256(canonical_json(part).encode()).hexdigest()


def samples_setting(config: Config, problems_path: Path, samples: int) -> dict[str, Any]:
    """What a samples file was made with; a file whose setting differs is regenerated."""
    from commands.publish import file_sha256

    return {
        "format": SAMPLES_FORMAT,
        "generation_hash": generation_hash(config),
        "problems_sha256": file_sha256(problems_path),
        "samples": samples,
    }


def sample_record(config: Config, gold: str, text: str, finish_reason: str, seed: int | None) -> dict[str, Any]:
    """One policy sample cut into steps with the config's splitter and graded with the project's grader."""
    from annotators.answers import judge_text
    from annotators.steps import split_steps

    steps, _ = split_steps(text, config.steps.splitter, config.steps.pattern, max_steps=config.steps.max_steps)
    verdict = judge_text(text, finish_reason, gold, truncation_policy=config.answers.truncation_policy)
    return {
        "text": text,
        "steps": steps,
        "answer": answer_key(verdict.extracted),
        "correct": verdict.correct is True,  # undecided (engine error, ungradable gold) is not a right answer
        "verdict_reason": verdict.reason,
        "finish_reason": finish_reason,
        "seed": seed,
    }


def generate_samples(config: Config, problems: list[dict[str, str]], samples: int) -> list[dict[str, Any]]:
    """`samples` policy samples per problem, one request per problem with its own derived seed."""
    from engines import get_engine
    from engines.base import checked_generate
    from engines.prompts import PromptRenderer
    from schemas.config import sampling_params
    from schemas.records import Request, derive_seed

    renderer = PromptRenderer(config.policy)
    base = sampling_params(config.sampling)
    requests = [
        Request(
            renderer.render(p["question"]),
            samples,
            replace(base, seed=derive_seed(config.run.seed, p["problem_id"], "bestofn")),
            f"bestofn/{p['problem_id']}",
        )
        for p in problems
    ]
    outputs = checked_generate(get_engine(config.policy), requests)
    return [
        {**p, "samples": [sample_record(config, p["answer"], s.text, s.finish_reason, s.seed) for s in out]}
        for p, out in zip(problems, outputs, strict=True)
    ]


def read_samples(path: Path, setting: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The cached problems with samples, or None when the file is absent or was made with another setting."""
    if not path.is_file():
        return None
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not lines or lines[0].get("setting") != setting:
        print(f"evaluate: {path} was made with another setting; generating again", file=sys.stderr)
        return None
    return lines[1:]


def write_samples(path: Path, setting: dict[str, Any], problems: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"setting": setting}, sort_keys=True)] + [json.dumps(p, sort_keys=True) for p in problems]
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text("\n".join(lines) + "\n")
    temp.replace(path)  # a crash mid-write never leaves a half file that looks like a cache


def cached_samples(config: Config, problems_path: Path, samples: int, samples_file: Path) -> list[dict[str, Any]]:
    """The samples file when its setting matches, else freshly generated samples (written there)."""
    setting = samples_setting(config, problems_path, samples)
    cached = read_samples(samples_file, setting)
    if cached is not None:
        return cached
    generated = generate_samples(config, read_problems(problems_path, config), samples)
    write_samples(samples_file, setting, generated)
    return generated


# ---------------------------------------------------------------- best-of-N: scoring and the table


def step_scores(scorer: Scorer, problems: list[dict[str, Any]]) -> list[list[list[float] | None]]:
    """The scorer's step scores of every sample (None for a sample without steps), per problem."""
    items = [(p["question"], list(s["steps"])) for p in problems for s in p["samples"] if s["steps"]]
    scored = iter(scorer.score_batch(items))
    return [[next(scored) if s["steps"] else None for s in p["samples"]] for p in problems]


def _valid_scores(scores: list[float] | None) -> list[float]:
    return [float(s) for s in scores or [] if s is not None and not math.isnan(float(s))]


def candidates(
    problems: list[dict[str, Any]],
    prm_scores: list[list[list[float] | None]],
    orm_scores: list[list[list[float] | None]] | None,
) -> list[list[dict[str, Any]]]:
    """Per problem, each sample's answer, correctness and PRM (min, last) and ORM (last step) scores."""
    out = []
    for index, problem in enumerate(problems):
        row = []
        for position, sample in enumerate(problem["samples"]):
            valid = _valid_scores(prm_scores[index][position])
            scores = prm_scores[index][position] or []
            orm = (orm_scores[index][position] or [None]) if orm_scores is not None else [None]
            row.append(
                {
                    "answer": sample["answer"],
                    "correct": bool(sample["correct"]),
                    "prm_min": min(valid) if valid else None,
                    "prm_last": scores[-1] if scores else None,
                    "orm": orm[-1],
                }
            )
        out.append(row)
    return out


def bestofn_step_level(
    problems: list[dict[str, Any]], prm_scores: list[list[list[float] | None]], threshold: float
) -> dict[str, Any] | None:
    """F1 and step AUROC of the PRM on the samples against the exact truth; None outside the arithmetic domain."""
    scores, firsts = [], []
    for problem, per_sample in zip(problems, prm_scores, strict=True):
        for sample, sample_scores in zip(problem["samples"], per_sample, strict=True):
            first = exact_first_error_of(problem["question"], list(sample["steps"])) if sample["steps"] else None
            if first is not None and sample_scores is not None:
                scores.append(sample_scores)
                firsts.append(first)
    if not firsts:
        return None
    return round_scores({**step_level_scores(scores, firsts, threshold), "n_paths": len(firsts)})


def _rounded_table(table: dict[str, Any]) -> dict[str, Any]:
    """Floats to 4 digits at every depth (NaN kept), so the JSON reads well and is stable."""
    if isinstance(table, dict):
        return {k: _rounded_table(v) for k, v in table.items()}
    if isinstance(table, float) and not math.isnan(table):
        return round(table, 4)
    return table


def evaluate_bestofn(
    problems: list[dict[str, Any]],
    scorers: list[Scorer],
    orm: Scorer | None,
    ns: tuple[int, ...],
    threshold: float,
    seed: int,
) -> dict[str, Any]:
    """The best-of-N table of every PRM (with the ORM and the baselines), and its step-level figures."""
    samples = min(len(p["samples"]) for p in problems)
    if samples < max(ns):
        raise ConfigError(f"--samples: best-of-{max(ns)} needs at least {max(ns)} samples per problem, got {samples}")
    orm_scores = step_scores(orm, problems) if orm is not None else None
    prms = {}
    for scorer in scorers:
        prm_scores = step_scores(scorer, problems)
        scored = candidates(problems, prm_scores, orm_scores)
        table = best_of_n(scored, ns, seed=seed)
        prms[scorer.name] = {
            "best_of_n": _rounded_table(table),
            "within_problem_auroc": _rounded_table(within_problem_auroc(scored)),
            "step_level": bestofn_step_level(problems, prm_scores, threshold),
        }
    return {
        "benchmark": "bestofn",
        "problems": len(problems),
        "samples_per_problem": samples,
        "ns": list(ns),
        "orm": orm.name if orm is not None else None,
        "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": seed, "interval": 0.95, "over": "problems"},
        "tie_break": TIE_BREAK,
        "prms": prms,
    }


# ---------------------------------------------------------------- the command


def _ns(text: str) -> tuple[int, ...]:
    try:
        ns = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise ConfigError(f"--n: {text!r} is not a comma-separated list of integers") from error
    if not ns or min(ns) < 1:
        raise ConfigError(f"--n: {text!r} needs positive integers")
    return ns


def bestofn_command(args: argparse.Namespace, scorers: list[Scorer], orm: Scorer | None) -> dict[str, Any]:
    """`evaluate --benchmark bestofn`: load or generate the samples, score them, build the table."""
    if not args.problems:
        raise ConfigError("--problems: the best-of-N benchmark needs a JSONL file of held-out problems")
    problems_path = Path(args.problems)
    if not problems_path.is_file():
        raise ConfigError(f"--problems: {problems_path} not found")
    config = load_config(args.config or DEFAULT_CONFIG, args.set)
    ns = _ns(args.n)
    if args.samples < max(ns):
        raise ConfigError(f"--samples: {args.samples} is fewer than the largest N ({max(ns)})")
    default_file = problems_path.with_name(f"{problems_path.stem}.bestofn-samples.jsonl")
    samples_file = Path(args.samples_file) if args.samples_file else default_file
    problems = cached_samples(config, problems_path, args.samples, samples_file)
    report = evaluate_bestofn(problems, scorers, orm, ns, args.threshold, config.run.seed)
    return {"problems_file": str(problems_path), "samples_file": str(samples_file), **report}


def safe_name(name: str) -> str:
    """A checkpoint name usable as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "prm"


def write_run_results(run: Path, report: dict[str, Any]) -> list[Path]:
    """`RUN/evaluation/<benchmark>-<prm name>.json`, one per PRM, each the report restricted to that PRM."""
    key = "prms" if "prms" in report else "annotators"
    folder = run / "evaluation"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, result in report[key].items():
        path = folder / f"{report['benchmark']}-{safe_name(name)}.json"
        path.write_text(json.dumps({**report, key: {name: result}}, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def cmd_evaluate_prm(args: argparse.Namespace) -> dict[str, Any]:
    """The PRM side of `run.py evaluate`: the report for `args.benchmark`, also written into `--run`."""
    from pipelines.manifest import finished_run

    names = checkpoints(args.prm)
    if not names:
        raise ConfigError("--prm: name at least one PRM checkpoint")
    run = finished_run(args.run, "--run") if args.run else None
    scorers = [load_scorer(name) for name in names]
    orm = load_scorer(args.orm) if args.orm else None
    if args.benchmark == "bestofn":
        report = bestofn_command(args, scorers, orm)
    elif args.benchmark == "exact":
        if run is None:
            raise ConfigError("--run: the exact benchmark scores a finished run on the arithmetic domain")
        report = prm_exact(scorers, run, args.threshold)
    else:
        path = Path(args.data) if args.data else DEFAULT_DATA[args.benchmark]
        if not path.exists():
            raise ConfigError(f"--data: {path} not found (the default needs ../shared/data beside the repo)")
        if args.benchmark == "processbench":
            report = prm_processbench(scorers, path, args.threshold, args.limit)
        else:
            report = prm_prm800k(scorers, path, args.threshold, args.neutral, args.limit)
    if run is not None:
        write_run_results(run, report)
    return report


def add_prm_arguments(parser: argparse.ArgumentParser) -> None:
    """The `evaluate` options of the PRM evaluation."""
    parser.add_argument("--prm", action="append", default=[], metavar="CKPT", help="PRM checkpoint (repeat or a,b)")
    parser.add_argument("--orm", default=None, metavar="CKPT", help="with bestofn: an outcome reward model")
    parser.add_argument("--threshold", type=float, default=0.5, help="a step scored below it is wrong (0.5)")
    parser.add_argument("--problems", help="with bestofn: JSONL of held-out problems (question, answer)")
    parser.add_argument("--samples", type=int, default=64, help="with bestofn: policy samples per problem (64)")
    parser.add_argument("--n", default=",".join(map(str, DEFAULT_NS)), help="with bestofn: the N's (4,16,64)")
    parser.add_argument("--samples-file", help="with bestofn: the samples cache (default: beside --problems)")
