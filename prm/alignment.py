"""One label per step on the separator token that ends it, every other position ignored: TRL 1.13.0's alignment.

TRL's `PRMTrainer.tokenize_row` (the last release with it, docs/prm-training.md): BOS (when the tokenizer has one),
the prompt's tokens, then for each step its tokens followed by the separator's tokens; the step's label sits on the
last separator token and every other position is -100. Steps are tokenized one by one, so the same text gives the
same ids at training and at scoring time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from schemas.formats import replace_separator

IGNORE = -100


class Tokenizer(Protocol):
    bos_token_id: int | None

    def __call__(self, text: str, add_special_tokens: bool = ...) -> Any: ...

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


class AlignmentError(ValueError):
    """A separator that cannot mark steps with this tokenizer, or steps and labels of different lengths."""


def separator_ids(tokenizer: Tokenizer, separator: str) -> list[int]:
    ids = tokenizer.encode(separator, add_special_tokens=False)
    if not ids:
        raise AlignmentError(f"the step separator {separator!r} encodes to no token with this tokenizer")
    return ids


def tokenize_row(
    tokenizer: Tokenizer,
    prompt: str,
    steps: Sequence[str],
    labels: Sequence[float | bool | None],
    separator: str = "\n",
    max_length: int | None = None,
) -> dict[str, list[Any]]:
    """`input_ids`, `labels` (the step's label on its last separator token, -100 elsewhere) and `step_positions`.

    A label may be a bool (hard), a float in [0, 1] (soft: the probability that the step is right) or None (this
    step is not trained on: the ORM's steps before the last). `step_positions` lists the labelled position of
    every step that fits within `max_length`, including unlabelled ones, so scoring reads the same places.
    """
    if len(steps) != len(labels):
        raise AlignmentError(f"{len(steps)} steps but {len(labels)} labels")
    sep = separator_ids(tokenizer, separator)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id, *ids]
    targets: list[Any] = [IGNORE] * len(ids)
    positions: list[int] = []
    for step, label in zip((replace_separator(s, separator) for s in steps), labels, strict=True):
        piece = tokenizer(step, add_special_tokens=False)["input_ids"] + sep
        ids.extend(piece)
        targets.extend([IGNORE] * (len(piece) - 1))
        targets.append(IGNORE if label is None else _target(label))
        positions.append(len(ids) - 1)
    if max_length is not None and len(ids) > max_length:
        ids, targets = ids[:max_length], targets[:max_length]
        positions = [p for p in positions if p < max_length]
    return {"input_ids": ids, "labels": targets, "step_positions": positions}


def _target(label: float | bool) -> float | int:
    if isinstance(label, bool):
        return int(label)
    value = float(label)
    if not 0.0 <= value <= 1.0:
        raise AlignmentError(f"a soft label must lie in [0, 1], got {value}")
    return value
