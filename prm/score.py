"""`PRM.score(question, steps)`: the probability that each step is right, from a checkpoint `run.py train` wrote.

The checkpoint is a plain `AutoModelForTokenClassification` folder (2 labels: 0 wrong, 1 right) plus
`prm_config.json` (the step separator it was trained with); the score of a step is the softmax of class 1 at the
separator token that ends it, placed exactly as in training (prm/alignment.py). Steps past the model's context get
NaN: they were not seen, so no score is claimed for them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prm.alignment import tokenize_row

PRM_CONFIG = "prm_config.json"


def context_length(model_config: Any) -> int | None:
    """The longest sequence the model was built for (Llama-style `max_position_embeddings`), if it says."""
    value = getattr(model_config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def pad_batch(features: Sequence[dict[str, list[Any]]], pad_id: int, torch: Any) -> tuple[Any, Any, Any]:
    """Right-padded `input_ids`, `attention_mask` and float targets (-100 where ignored)."""
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    targets = torch.full((len(features), width), -100.0, dtype=torch.float32)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"], dtype=torch.long)
        mask[i, :n] = 1
        if "labels" in f:
            targets[i, :n] = torch.tensor([float(x) for x in f["labels"]], dtype=torch.float32)
    return ids, mask, targets


class PRM:
    """A trained process reward model on one device; `score` and `score_batch` are what evaluation and users call."""

    def __init__(self, model: Any, tokenizer: Any, separator: str = "\n", name: str = "prm", device: str = "cpu"):
        import torch

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.separator = separator
        self.name = name
        self.device = device
        self.max_length = context_length(model.config)
        self._torch = torch
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = 0 if pad is None else int(pad)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, threads: int | None = None) -> PRM:
        import torch
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: no config.json (not a checkpoint `run.py train` wrote)")
        settings = json.loads((path / PRM_CONFIG).read_text()) if (path / PRM_CONFIG).is_file() else {}
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = AutoModelForTokenClassification.from_pretrained(path, dtype=torch.float32).to(device)
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(model, tokenizer, settings.get("separator", "\n"), settings.get("name", path.name), device)

    def features(self, question: str, steps: Sequence[str]) -> dict[str, list[Any]]:
        return tokenize_row(self.tokenizer, question, steps, [None] * len(steps), self.separator, self.max_length)

    def score(self, question: str, steps: Sequence[str]) -> list[float]:
        return self.score_batch([(question, list(steps))])[0]

    def score_batch(self, items: Sequence[tuple[str, Sequence[str]]], batch_size: int = 32) -> list[list[float]]:
        """Scores of many solutions, batched by length so padding stays small; the order of `items` is kept."""
        features = [self.features(question, steps) for question, steps in items]
        order = sorted(range(len(items)), key=lambda i: len(features[i]["input_ids"]))
        scores: list[list[float]] = [[] for _ in items]
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            probs = self.right_probabilities([features[i] for i in chunk])
            for row, i in enumerate(chunk):
                found = [float(probs[row, p]) for p in features[i]["step_positions"]]
                scores[i] = found + [math.nan] * (len(items[i][1]) - len(found))
        return scores

    def right_probabilities(self, features: Sequence[dict[str, list[Any]]]) -> Any:
        """P(class 1) at every position of a padded batch, as a CPU tensor."""
        torch = self._torch
        ids, mask, _ = pad_batch(features, self.pad_id, torch)
        with torch.no_grad():
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        return torch.softmax(logits.float(), dim=-1)[..., 1].cpu()
