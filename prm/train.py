"""A small PRM trainer on transformers and torch (no TRL at run time): token classification on step separators.

The model is `AutoModelForTokenClassification` with 2 labels (0 wrong, 1 right) on top of any causal LM; targets
follow TRL 1.13.0's alignment (prm/alignment.py). The loss is cross-entropy against the probability that a step is
right: 0 or 1 for hard labels, the MC value for soft ones (the same loss in both cases). Training runs for a number
of optimizer steps fixed up front; every `save_every` steps a checkpoint holds the weights, optimizer, scheduler and
history, and a rerun with the same setting continues from the latest one (docs/prm-training.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prm.alignment import tokenize_row
from prm.bestofn import first_error_from_scores
from prm.examples import Example, load_examples, run_shards, split_by_problem
from prm.score import PRM, PRM_CONFIG, context_length, pad_batch

log = logging.getLogger("stepforge.train")
CHECKPOINTS = "checkpoints"
METRICS = "metrics.json"
PLOT = "training_curve.png"


@dataclass
class TrainConfig:
    base: str
    output: str
    labels: str = "hard"
    epochs: float = 3.0
    max_steps: int | None = None  # overrides epochs
    batch_size: int = 16
    learning_rate: float = 5e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    validation_fraction: float = 0.1
    seed: int = 0
    separator: str = "\n"
    max_length: int | None = None  # default: the model's context
    threshold: float = 0.5
    eval_every: int = 100
    save_every: int = 100
    log_every: int = 20
    keep_checkpoints: int = 2
    device: str = "auto"
    threads: int | None = None
    runs: list[str] = field(default_factory=list)

    def identity(self) -> dict[str, Any]:
        """What decides the weights: a resumed run must match it (device, threads and logging do not)."""
        keep = ("base", "labels", "epochs", "max_steps", "batch_size", "learning_rate", "warmup_ratio")
        keep += ("weight_decay", "max_grad_norm", "validation_fraction", "seed", "separator", "max_length")
        return {k: getattr(self, k) for k in keep}


class TrainError(RuntimeError):
    """A setting that cannot train (no examples, a checkpoint of another setting), said plainly."""


def data_fingerprint(runs: Sequence[str]) -> str:
    """sha256 over the runs' shard bytes: a resumed training must read the same rows."""
    digest = hashlib.sha256()
    for run in runs:
        for shard in run_shards(run):
            digest.update(shard.name.encode())
            with open(shard, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def batch_order(n: int, batch_size: int, epoch: int, seed: int) -> list[list[int]]:
    """The batches of one epoch: a shuffle seeded by (seed, epoch), so a resumed run sees the same order."""
    indices = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(indices)
    return [indices[i : i + batch_size] for i in range(0, n, batch_size)]


def soft_cross_entropy(logits: Any, targets: Any, torch: Any) -> Any:
    """Mean over labelled positions of -(p log q_right + (1 - p) log q_wrong); -100 marks positions ignored."""
    mask = targets != -100
    logp = torch.log_softmax(logits[mask].float(), dim=-1)
    p = targets[mask]
    return -(p * logp[:, 1] + (1 - p) * logp[:, 0]).mean()


def validation_metrics(prm: PRM, examples: Sequence[Example], threshold: float, outcome: bool) -> dict[str, Any]:
    """Step accuracy and AUROC, plus ProcessBench first-error F1 (or outcome accuracy for an ORM)."""
    from annotators.evaluation import auroc, processbench_scores

    if not examples:
        return {}
    scores = prm.score_batch([(e.prompt, list(e.steps)) for e in examples])
    pairs = [(s, t) for e, ss in zip(examples, scores, strict=True) for s, t in zip(ss, e.targets, strict=True)]
    pairs = [(s, t >= 0.5) for s, t in pairs if t is not None and not math.isnan(s)]
    figures: dict[str, Any] = {
        "solutions": len(examples),
        "steps": len(pairs),
        "step_accuracy": sum((s >= threshold) == t for s, t in pairs) / len(pairs) if pairs else math.nan,
        "step_auroc": auroc([s for s, _ in pairs], [t for _, t in pairs]),
    }
    if not outcome:
        truth = [first_error_from_scores([1.0 if t is None else t for t in e.targets], 0.5) for e in examples]
        predicted = [first_error_from_scores(s, threshold) for s in scores]
        figures.update({f"first_error_{k}": v for k, v in processbench_scores(predicted, truth).items()})
    return {k: (round(v, 4) if isinstance(v, float) and not math.isnan(v) else v) for k, v in figures.items()}


def latest_checkpoint(output: Path) -> Path | None:
    found = [p for p in (output / CHECKPOINTS).glob("checkpoint-*") if (p / "trainer_state.pt").is_file()]
    return max(found, key=lambda p: int(p.name.split("-")[1]), default=None)


def _device(choice: str, torch: Any) -> str:
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def _eta(done: int, total: int, seconds: float) -> str:
    if done <= 0:
        return "?"
    left = seconds / done * (total - done)
    return f"{int(left // 60)}m{int(left % 60):02d}s"


def train(config: TrainConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train a PRM on `config.runs`; write the model, `prm_config.json`, `metrics.json` and a loss/F1 plot."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, get_linear_schedule_with_warmup

    say = progress or log.info
    if config.threads:
        torch.set_num_threads(config.threads)
    output = Path(config.output)
    skipped: Counter = Counter()
    examples = load_examples(config.runs, config.labels, skipped)
    train_set, validation = split_by_problem(examples, config.validation_fraction, config.seed)
    if not train_set:
        raise TrainError(
            f"no training examples with {config.labels} labels in {', '.join(config.runs)} ({dict(skipped)})"
        )
    identity = {**config.identity(), "data_sha256": data_fingerprint(config.runs)}

    torch.manual_seed(config.seed)
    device = _device(config.device, torch)
    tokenizer = AutoTokenizer.from_pretrained(config.base)
    model = AutoModelForTokenClassification.from_pretrained(
        config.base,
        num_labels=2,
        id2label={0: "wrong", 1: "right"},
        label2id={"wrong": 0, "right": 1},
        dtype=torch.float32,
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.config.pad_token_id = pad
    max_length = config.max_length or context_length(model.config)
    features = [tokenize_row(tokenizer, e.prompt, e.steps, e.targets, config.separator, max_length) for e in train_set]
    per_epoch = math.ceil(len(features) / config.batch_size)
    total = config.max_steps or max(1, math.ceil(config.epochs * per_epoch))

    history: list[dict[str, Any]] = []
    step = 0
    resumed = latest_checkpoint(output)
    state = None
    if resumed is not None:
        state = torch.load(resumed / "trainer_state.pt", weights_only=True)
        if state["identity"] != identity:
            changed = sorted(k for k in identity if state["identity"].get(k) != identity[k])
            raise TrainError(f"{resumed} was trained with another setting ({', '.join(changed)}); use a new --output")
        model = AutoModelForTokenClassification.from_pretrained(resumed, dtype=torch.float32)
    model.to(device)  # before the optimizer, so its state lives where the parameters do
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step, history = state["step"], state["history"]
        say(f"train: resuming from {resumed} at step {step}/{total}")
    scorer = PRM(model, tokenizer, config.separator, output.name, device)
    outcome = config.labels == "outcome"
    say(
        f"train: {len(train_set)} solutions ({len({e.problem_id for e in train_set})} problems) for training, "
        f"{len(validation)} held out by problem; {config.labels} labels; {total} steps of {config.batch_size} "
        f"on {device}" + (f"; skipped {dict(skipped)}" if skipped else "")
    )

    started, losses = time.monotonic(), []
    first = step
    while step < total:
        epoch, index = divmod(step, per_epoch)
        batch = batch_order(len(features), config.batch_size, epoch, config.seed)[index]
        model.train()
        ids, mask, targets = pad_batch([features[i] for i in batch], pad, torch)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        loss = soft_cross_entropy(logits, targets.to(device), torch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        losses.append(float(loss.detach()))
        if step % config.log_every == 0 or step == total:
            mean = sum(losses) / len(losses)
            history.append({"step": step, "epoch": round(step / per_epoch, 3), "loss": round(mean, 5)})
            elapsed = time.monotonic() - started
            say(
                f"train: step {step}/{total} loss {mean:.4f} lr {scheduler.get_last_lr()[0]:.2e} "
                f"{(step - first) / elapsed:.2f} steps/s ETA {_eta(step - first, total - first, elapsed)}"
            )
            losses = []
        if step % config.eval_every == 0 or step == total:
            model.eval()
            figures = validation_metrics(scorer, validation, config.threshold, outcome)
            history.append({"step": step, "validation": figures})
            if figures:
                say(f"train: validation at step {step}: {json.dumps(figures)}")
        if step % config.save_every == 0 or step == total:
            _save_checkpoint(output, step, model, tokenizer, optimizer, scheduler, identity, history, config, torch)

    return _finish(output, model, tokenizer, config, identity, history, train_set, validation, skipped, total)


def _save_checkpoint(output, step, model, tokenizer, optimizer, scheduler, identity, history, config, torch) -> None:
    """Weights, optimizer, scheduler and history at `step`, written to a temporary folder and renamed into place."""
    folder = output / CHECKPOINTS / f"checkpoint-{step}"
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    state = {
        "step": step,
        "identity": identity,
        "history": history,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    torch.save(state, partial / "trainer_state.pt")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    kept = sorted(
        (p for p in (output / CHECKPOINTS).glob("checkpoint-*") if not p.name.endswith(".partial")),
        key=lambda p: int(p.name.split("-")[1]),
    )
    for old in kept[: -config.keep_checkpoints]:
        shutil.rmtree(old)


def _finish(output, model, tokenizer, config, identity, history, train_set, validation, skipped, total) -> dict:
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    settings = {"separator": config.separator, "labels": config.labels, "name": output.name, "base": config.base}
    (output / PRM_CONFIG).write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n")
    final = next((h["validation"] for h in reversed(history) if "validation" in h), {})
    metrics = {
        "setting": {**asdict(config), **identity, "runs": list(config.runs)},
        "examples": {
            "train_solutions": len(train_set),
            "train_problems": len({e.problem_id for e in train_set}),
            "validation_solutions": len(validation),
            "validation_problems": len({e.problem_id for e in validation}),
            "skipped": dict(skipped),
        },
        "steps": total,
        "final_loss": next((h["loss"] for h in reversed(history) if "loss" in h), None),
        "validation": final,
        "history": history,
    }
    for key in ("output", "device", "threads"):  # where it ran, not what it is
        metrics["setting"].pop(key, None)
    (output / METRICS).write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    (output / PLOT).write_bytes(plot_history(history, config.labels))
    return metrics


def plot_history(history: list[dict[str, Any]], labels: str) -> bytes:
    """Training loss and validation first-error F1 (outcome accuracy stands in for an ORM) by step, as PNG bytes."""
    import io

    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.4), dpi=100)
    loss_axes, val_axes = figure.subplots(1, 2)
    points = [(h["step"], h["loss"]) for h in history if "loss" in h]
    loss_axes.plot([s for s, _ in points], [v for _, v in points], color="#1f77b4")
    loss_axes.set(title="training loss", xlabel="step")
    for key, colour in (("first_error_f1", "#d62728"), ("step_auroc", "#2ca02c"), ("step_accuracy", "#9467bd")):
        found = [(h["step"], h["validation"].get(key)) for h in history if h.get("validation")]
        found = [(s, v) for s, v in found if isinstance(v, float)]
        if found:
            val_axes.plot([s for s, _ in found], [v for _, v in found], marker="o", color=colour, label=key)
    val_axes.set(title=f"validation ({labels} labels)", xlabel="step", ylim=(0, 1))
    if val_axes.get_legend_handles_labels()[0]:
        val_axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
