"""Build (and optionally train) a tiny Llama-style step-by-step policy, CPU only, no downloads.

Run from the repository root; training is deterministic for a given ``--threads``::

    python -m models.build_tiny_model /tmp/tiny-untrained --train-steps 0   # untrained, a few s
    python -m models.build_tiny_model models/tiny-arith --train-steps 1400 --lr 3e-3 --curriculum-steps 300
    python -m models.build_tiny_model models/tiny-chain --domain chains ...  # models/README.md has the recipe

It writes ``save_pretrained`` weights in bfloat16, the tokenizer, ``generation_config.json``,
``training_info.json`` and a ``recipe/`` copy of the code and arguments, then (unless
``--skip-eval``) runs ``models.evaluate_tiny_model`` with vLLM in a fresh process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
from tokenizers import models as tok_models
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from domains.arithmetic import generate_problems, gold_solution
from models.evaluate_tiny_model import TASKS, Task, eval_problems, greedy_hf, score

PAD, BOS, EOS = "<pad>", "<s>", "</s>"  # ids 0, 1, 2
TRAIN_SEED_BASE = 1_000_000  # training batch i uses problems of seed TRAIN_SEED_BASE + i
TOKENIZER_SEED = 7


def build_tokenizer(num_problems: int = 20_000, max_length: int = 256) -> PreTrainedTokenizerFast:
    """Byte-level BPE on generated questions and solutions; every digit is its own token.

    Trained on arithmetic problems for every task: chains use the same symbols, so both models share one vocabulary.
    """
    problems = generate_problems(num_problems, seed=TOKENIZER_SEED)
    # Questions and solutions are tokenized apart (as in training and at inference), so
    # no merge ever spans the prompt/completion boundary ("=?" + " Step ").
    texts = [p["question"] for p in problems]
    texts += [gold_solution(p["expression"]) for p in problems]
    tok = Tokenizer(tok_models.BPE())
    # use_regex=False lets " Step " and " Answer: " become single tokens, so a 6-step
    # solution takes <= 78 tokens and fits max_tokens=96.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # any text stays encodable
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    # BOS only: EOS is appended to training targets by hand so prompts never end in EOS.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, 1), (EOS, 2)]
    )
    assert [tok.token_to_id(t) for t in (PAD, BOS, EOS)] == [0, 1, 2]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",  # generation batches are left-padded
        model_max_length=max_length,
    )


def build_model(vocab_size: int, layers: int = 4, max_positions: int = 256) -> LlamaForCausalLM:
    """LlamaForCausalLM, hidden 256, 4 heads / 2 KV heads, MLP 768, tied (4 layers: ~3.2 M)."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return LlamaForCausalLM(config)


def encode_batch(tokenizer: PreTrainedTokenizerFast, problems: list[dict]) -> dict[str, torch.Tensor]:
    """Right-padded ``<s> question`` + ``solution </s>``; loss only on the solution and EOS."""
    q_ids = tokenizer([p["question"] for p in problems])["input_ids"]
    s_ids = tokenizer([gold_solution(p["expression"]) for p in problems], add_special_tokens=False)["input_ids"]
    rows = [(q, [*s, tokenizer.eos_token_id]) for q, s in zip(q_ids, s_ids, strict=True)]
    width = max(len(q) + len(s) for q, s in rows)
    input_ids = torch.zeros((len(rows), width), dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for i, (q, s) in enumerate(rows):
        n = len(q) + len(s)
        input_ids[i, :n] = torch.tensor(q + s)
        attention[i, :n] = 1
        labels[i, len(q) : n] = torch.tensor(s)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def lr_at(step: int, total: int, peak: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``min_ratio * peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def chain_length_at(step: int, min_steps: int, max_steps: int, curriculum_steps: int) -> int:
    """Chain length of batch ``step``: cycles over a range that widens from ``min_steps`` to the full one.

    Short chains first let copying operands from the question emerge early; without it, mixed
    lengths from step 0 left a 700-step run at 0 % accuracy.
    """
    span = max_steps - min_steps + 1
    if step < curriculum_steps:
        span = min(span, 1 + step * span // curriculum_steps)
    return min_steps + step % span


def train(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    args: argparse.Namespace,
    task: Task,
) -> dict[str, Any]:
    """Train on a fresh stream of problems, one chain length per batch (see ``chain_length_at``)."""
    held_out = {p["expression"] for p in eval_problems(args.eval_per_length, task=task)}
    quick = eval_problems(args.quick_eval_per_length, task=task)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=args.weight_decay)
    warmup = min(args.warmup, max(1, args.train_steps // 10))
    curve: list[dict[str, Any]] = []
    quick_evals: list[dict[str, Any]] = []
    recent: list[float] = []
    tokens = 0
    t0 = time.time()
    model.train()
    for step in range(args.train_steps):
        # one chain length per batch: no padding waste (mixing lengths per update was not better)
        k = chain_length_at(step, args.min_steps, args.max_steps, args.curriculum_steps)
        problems = task.generate(args.batch_size, seed=TRAIN_SEED_BASE + step, min_steps=k, max_steps=k)
        problems = [p for p in problems if p["expression"] not in held_out]  # no leakage
        batch = encode_batch(tokenizer, problems)
        lr = lr_at(step, args.train_steps, args.lr, warmup, args.min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = lr
        # bf16 autocast runs the matmuls on AMX: ~2x faster than fp32 on one core here
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += int(batch["attention_mask"].sum())
        recent = [*recent[-19:], loss.item()]
        done = step + 1
        if done % args.log_every == 0 or done == args.train_steps:
            entry = {
                "step": done,
                "loss": round(sum(recent) / len(recent), 4),
                "lr": round(lr, 6),
                "seconds": round(time.time() - t0, 1),
                "tokens": tokens,
            }
            curve.append(entry)
            print(json.dumps(entry), flush=True)
        if args.quick_eval_every and done % args.quick_eval_every == 0:
            model.eval()
            res = score(quick, greedy_hf(model, tokenizer, [p["question"] for p in quick], max_tokens=task.max_tokens))
            model.train()
            q = {"step": done, "accuracy": res["accuracy"], "per_step_accuracy": res["per_step_accuracy"]}
            q["by_len"] = res["accuracy_by_chain_length"]
            q["first_error"] = res["first_error_step_counts"]
            quick_evals.append(q)
            print("quick-eval", json.dumps(q), flush=True)
    return {
        "steps": args.train_steps,
        "seconds": round(time.time() - t0, 1),
        "tokens": tokens,
        "final_loss": round(sum(recent) / len(recent), 4) if recent else None,
        "loss_curve": curve,
        "quick_evals_hf_fp32": quick_evals,
    }


def save_recipe(out: Path, args: argparse.Namespace) -> None:
    """Record the exact arguments and the sha256 of the code that made this model (the code itself is in git)."""
    recipe = out / "recipe"
    recipe.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parent.parent
    sources = {
        rel: hashlib.sha256((root / rel).read_bytes()).hexdigest()
        for rel in (
            "models/build_tiny_model.py",
            "models/evaluate_tiny_model.py",
            "domains/arithmetic.py",
            "domains/chains.py",
        )
    }
    (recipe / "sources.json").write_text(json.dumps(sources, indent=1, sort_keys=True) + "\n")
    (recipe / "args.json").write_text(json.dumps(vars(args), indent=1) + "\n")
    (recipe / "command.txt").write_text("python -m models.build_tiny_model " + " ".join(sys.argv[1:]) + "\n")


def swap_in(stage: Path, out: Path) -> None:
    """Replace ``out`` by ``stage`` with two renames, so readers never see a half-written model."""
    old = out.with_name(f"{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    stage.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", default="models/tiny-arith")
    ap.add_argument("--domain", choices=sorted(TASKS), default="arithmetic", help="what the model learns")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--train-steps", type=int, default=1400, help="0 builds an untrained model")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--min-steps", type=int, default=None, help="default: the task's shortest chain")
    ap.add_argument("--max-steps", type=int, default=None, help="default: the task's longest chain")
    ap.add_argument("--curriculum-steps", type=int, default=300, help="steps to widen chains to max")
    ap.add_argument("--no-bf16", dest="bf16", action="store_false", help="train in plain fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--quick-eval-every", type=int, default=0, help="HF greedy check (tuning)")
    ap.add_argument("--quick-eval-per-length", type=int, default=30)
    ap.add_argument("--eval-per-length", type=int, default=100, help="held-out set size")
    ap.add_argument("--skip-eval", action="store_true", help="no vLLM evaluation at the end")
    args = ap.parse_args()
    task = TASKS[args.domain]
    args.min_steps = task.min_steps if args.min_steps is None else args.min_steps
    args.max_steps = task.max_steps if args.max_steps is None else args.max_steps

    torch.set_num_threads(args.threads)  # 2-core box shared with others: 1 thread is safest
    torch.manual_seed(args.seed)
    out = Path(args.out_dir)
    # Build beside the target and swap at the end: tests may be reading the shipped model meanwhile.
    stage = out.with_name(f"{out.name}.building-{os.getpid()}")
    stage.mkdir(parents=True)
    t_start = time.time()

    try:
        tokenizer = build_tokenizer(max_length=task.max_model_len)
        model = build_model(len(tokenizer), args.layers, task.max_model_len)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"vocab {len(tokenizer)}, params {n_params}", flush=True)
        train_info = train(model, tokenizer, args, task) if args.train_steps > 0 else {"steps": 0}

        model.eval()
        model.generation_config = GenerationConfig(
            bos_token_id=1, eos_token_id=2, pad_token_id=0, max_new_tokens=task.max_tokens
        )
        model.to(torch.bfloat16).save_pretrained(stage)  # bf16 halves the committed weights (~6.5 MB)
        tokenizer.save_pretrained(stage)
        save_recipe(stage, args)
        info = {
            "description": f"tiny Llama-style step-by-step policy (domains/{task.name}.py)",
            "params": n_params,
            "vocab_size": len(tokenizer),
            "dtype_saved": "bfloat16",
            "args": vars(args),
            "train": train_info,
            "wall_seconds_build": round(time.time() - t_start, 1),
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "transformers": __import__("transformers").__version__,
                "tokenizers": __import__("tokenizers").__version__,
            },
        }
        (stage / "training_info.json").write_text(json.dumps(info, indent=1) + "\n")
        print(json.dumps({k: v for k, v in train_info.items() if k != "loss_curve"}), flush=True)
        if not args.skip_eval:
            cmd = [sys.executable, "-m", "models.evaluate_tiny_model", str(stage), "--write-info"]
            cmd += ["--per-length", str(args.eval_per_length)]
            subprocess.run(cmd, check=True)  # fresh process: vLLM as the pipeline runs it
        swap_in(stage, out)
        print(f"saved to {out}", flush=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # no half-built model left beside the real one
        raise


if __name__ == "__main__":
    main()
