"""The closed loop: PRMs trained on StepForge's labels, judged by what they do (issue 17, docs/prm-training.md).

    .venv/bin/python bench/bench_closed_loop.py --work runs/closed-loop [--train-problems 200] [--heldout-problems 120]

On the bundled `tiny-arith` policy, from one solution budget:
- `mc`: the demo preset's MC run on the training problems (4 solutions, k = 8 completions per step);
- `consensus`: a relabel of that run keeping the paths where MC and the arithmetic verifier agree;
- `exact`: the same solutions with the exact step truth (the ceiling a labeller can reach);
- `omegaprm`: an OmegaPRM run on the same problems whose rollout budget per problem is the MC run's mean samples
  per problem, so both spend about the same generation;
- `orm`: an outcome reward model on the MC run's solutions (final correctness only).
Each is trained with the same fixed recipe (base = the policy itself), then judged on held-out problems (another
generator seed, no question shared): ProcessBench first-error F1 and step AUROC against the exact truth of the
held-out samples, and best-of-N accuracy (N = 4, 16, 64 of 64 samples per problem) beside majority vote, a random
pick and the ORM, with paired bootstrap intervals. The setting is fixed here, before any figure: change it with
the options, never after looking. The long-chain domain has no trained policy (`models/README.md`), so only
`tiny-arith` runs. `--work DIR` reads back what is already there (runs, checkpoints, samples).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO_ROOT, Runs, demo_config, generate_problems, policy_fingerprint, samples_by_problem

from schemas.config import config_from_dict

METHODS = ("mc", "omegaprm", "consensus", "exact")


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def write_problems(work: Path, train_n: int, heldout_n: int, train_seed: int, heldout_seed: int) -> tuple[Path, Path]:
    """Training and held-out problems from two generator seeds; a held-out question seen in training is dropped."""
    train = generate_problems("arithmetic", train_n, train_seed)
    seen = {p["question"] for p in train}
    heldout = [p for p in generate_problems("arithmetic", heldout_n, heldout_seed) if p["question"] not in seen]
    paths = work / "train.jsonl", work / "heldout.jsonl"
    for path, rows in zip(paths, (train, heldout), strict=True):
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return paths


def consensus_config(parent: dict[str, Any]):
    """The MC run's own config plus the consensus preset's vote: MC and the arithmetic verifier must agree."""
    data = json.loads(json.dumps(parent["config"]))
    data["run"]["name"] = "consensus"
    data["annotators"] = {"arithmetic": {}}
    data.setdefault("filters", {})["consensus"] = {"enabled": True, "annotators": ["mc", "arithmetic"], "rule": "all"}
    return config_from_dict(data)


def relabel(work: Path, name: str, parent: Path, config) -> tuple[Path, dict[str, Any]]:
    from pipelines import annotate

    run = work / name
    stored = run / "manifest.json"
    if stored.exists() and json.loads(stored.read_text())["config_hash"] == config.config_hash():
        return run, json.loads(stored.read_text())
    return run, annotate.run(str(parent), config, str(run), [])


def train_prm(work: Path, name: str, run: Path, labels: str, args: argparse.Namespace) -> Path:
    """One checkpoint per labelling, all with the same recipe; a finished one is read back."""
    from prm.train import TrainConfig, train

    output = work / "ckpt" / name
    if (output / "metrics.json").exists():
        return output
    config = TrainConfig(
        base=str(REPO_ROOT / "models" / "tiny-arith"),
        output=str(output),
        runs=[str(run)],
        labels=labels,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.train_seed_prm,
        eval_every=10**9,  # validation once, at the end
        save_every=50,
        threads=args.threads,
        device="cpu",
    )
    train(config, progress=say)
    return output


def evaluate_heldout(
    work: Path, heldout: Path, config, checkpoints: dict[str, Path], args: argparse.Namespace
) -> dict[str, Any]:
    """Held-out samples (generated once, cached), every PRM's step-level and best-of-N figures, and the summary."""
    from commands.evaluate_prm import cached_samples, evaluate_bestofn
    from prm.score import PRM

    problems = cached_samples(config, heldout, args.samples, work / "heldout.samples.jsonl")
    say(f"held-out: {len(problems)} problems x {args.samples} samples")
    ns = tuple(int(n) for n in args.n.split(","))
    scorers = {
        name: PRM.from_pretrained(ckpt, device="cpu", threads=args.threads) for name, ckpt in checkpoints.items()
    }
    orm = scorers.pop("orm")
    for name, scorer in scorers.items():
        scorer.name = name
    orm.name = "orm"
    result = evaluate_bestofn(problems, list(scorers.values()), orm, ns, threshold=0.5, seed=config.run.seed)
    return {"heldout": result, "summary": summary(result, ns)}


def summary(result: dict[str, Any], ns: tuple[int, ...]) -> dict[str, Any]:
    """One row per labelling: step F1 and AUROC on held-out samples, best-of-N by min step score, against majority
    vote and against the exact-label PRM (the ceiling)."""
    prms = result["prms"]
    rows: dict[str, Any] = {}
    for name, figures in prms.items():
        step = figures["step_level"] or {}
        row = {
            "step_f1": step.get("f1"),
            "step_auroc": step.get("step_auroc"),
            "within_problem_auroc": (figures.get("within_problem_auroc") or {}).get("mean"),
        }
        for n in ns:
            cell = figures["best_of_n"][str(n)]["prm_min"]
            row[f"best_of_{n}"] = [cell["mean"], cell["low"], cell["high"]]
            row[f"best_of_{n}_vs_majority"] = [cell["vs_majority"][k] for k in ("mean", "low", "high")]
            row[f"best_of_{n}_beats_majority"] = cell["beats_majority"]
        rows[name] = row
    exact = rows.get("exact")
    for name, row in rows.items():
        if exact and name != "exact":
            row["gap_to_exact"] = {
                key: round(exact[key] - row[key], 4)
                for key in ("step_f1", "step_auroc", "within_problem_auroc")
                if isinstance(row[key], float) and isinstance(exact[key], float)
            } | {f"best_of_{n}": round(exact[f"best_of_{n}"][0] - row[f"best_of_{n}"][0], 4) for n in ns}
    anyone = next(iter(prms.values()))["best_of_n"]
    baselines = {
        method: {f"best_of_{n}": [anyone[str(n)][method][k] for k in ("mean", "low", "high")] for n in ns}
        for method in ("majority", "random", "orm", "oracle")
        if method in anyone[str(ns[0])]
    }
    return {"prm_min": rows, "baselines": baselines}


def data_probe(work: Path, train_file: Path, config, samples: int) -> Path:
    """`samples` policy solutions per training problem, as a labelled run for `--labels exact` (no MC: the exact
    truth needs no rollouts). Asks whether the exact-label PRM is limited by its data rather than its labels."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from commands.evaluate_prm import cached_samples

    run = work / f"probe-{samples}"
    shard = run / "data" / "train-00000-of-00001.parquet"
    problems = cached_samples(config, train_file, samples, work / f"train.samples-{samples}.jsonl")
    if not shard.exists():
        rows = [
            {
                "id": f"{p['problem_id']}/{i}",
                "problem_id": p["problem_id"],
                "prompt": p["question"],
                "completions": s["steps"],
                "labels": None,  # the exact truth is computed from the steps
                "mc_values": None,
                "outcome_correct": s["correct"],
                "truncated_after_first_error": False,
            }
            for p in problems
            for i, s in enumerate(p["samples"])
            if s["steps"]
        ]
        shard.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), shard)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for runs, checkpoints and samples")
    parser.add_argument("--train-problems", type=int, default=200)
    parser.add_argument("--heldout-problems", type=int, default=120)
    parser.add_argument("--train-seed", type=int, default=1001, help="problem generator seed of the training set")
    parser.add_argument("--heldout-seed", type=int, default=1002, help="problem generator seed of the held-out set")
    parser.add_argument("--samples", type=int, default=64, help="policy samples per held-out problem")
    parser.add_argument("--n", default="4,16,64", help="best-of-N sizes")
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-seed-prm", type=int, default=0, help="PRM training seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--data-probe", type=int, default=0, metavar="S", help="also an exact-label PRM on S solutions per problem"
    )
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    train_file, heldout_file = write_problems(
        work, args.train_problems, args.heldout_problems, args.train_seed, args.heldout_seed
    )
    policy = policy_fingerprint("models/tiny-arith")
    setting = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    say(f"setting: {json.dumps(setting)}; policy weights {json.dumps(policy['weights'])}")

    runs = Runs(work, warm_up_problems=0)
    mc_config = demo_config(train_file, [])
    mc_run, mc_manifest, _ = runs.run("mc", mc_config)
    mc_samples = samples_by_problem("mc", mc_run, mc_manifest, omegaprm=False)
    budget = math.ceil(sum(mc_samples.values()) / max(1, len(mc_samples)))
    say(f"mc: {mc_manifest['counts']['paths']} paths, {budget} samples per problem (the OmegaPRM budget)")
    omega_config = demo_config(
        train_file, ["search.method=omegaprm", f"search.omegaprm.rollout_budget={budget}"], preset="omegaprm.yaml"
    )
    omega_run, omega_manifest, _ = runs.run("omegaprm", omega_config)
    consensus_run, consensus_manifest = relabel(work, "consensus", mc_run, consensus_config(mc_manifest))

    sources = {
        "mc": (mc_run, "hard", mc_manifest),
        "omegaprm": (omega_run, "hard", omega_manifest),
        "consensus": (consensus_run, "hard", consensus_manifest),
        "exact": (mc_run, "exact", mc_manifest),
        "orm": (mc_run, "outcome", mc_manifest),
    }
    checkpoints = {name: train_prm(work, name, run, labels, args) for name, (run, labels, _) in sources.items()}
    if args.data_probe:
        probe = data_probe(work, train_file, mc_config, args.data_probe)
        checkpoints[f"exact-{args.data_probe}x"] = train_prm(work, f"exact-{args.data_probe}x", probe, "exact", args)
    training = {}
    for name, ckpt in checkpoints.items():
        metrics = json.loads((ckpt / "metrics.json").read_text())
        engine = sources[name][2]["engine"] if name in sources else {}
        training[name] = {
            "run": metrics["setting"]["runs"][0],
            "labels": metrics["setting"]["labels"],
            "generated_tokens": engine.get("generated_tokens"),
            "sequences": engine.get("sequences"),
            **metrics["examples"],
            "validation": metrics["validation"],
        }
    evaluation = evaluate_heldout(work, heldout_file, mc_config, checkpoints, args)
    print(json.dumps({"setting": setting, "policy": policy, "training": training, **evaluation}, indent=1))


if __name__ == "__main__":
    main()
