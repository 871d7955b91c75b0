"""What the format modules share: the refusal error, rule counting, reading a PATHS row, building one from an import."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np

from schemas.tables import SCHEMA_VERSION

Stats = MutableMapping[str, int]


class FormatError(ValueError):
    """A row that a converter or importer refuses, with the reason."""


def count_rule(stats: Stats | None, key: str, n: int = 1) -> None:
    """Add `n` applications of the rule `key` to `stats` (when given): the stated rules are never silent."""
    if stats is not None and n:
        stats[key] = stats.get(key, 0) + n


def row_name(row: Mapping[str, Any]) -> str:
    """How an error message names a row: its id, else its problem id."""
    return str(row.get("id") or row.get("problem_id") or "<row without id>")


def steps_and_labels(row: Mapping[str, Any]) -> tuple[str, list[str], list[bool]]:
    """The prompt, steps and hard labels of a PATHS row, refused (`FormatError`) where an export cannot use them."""
    prompt = row.get("prompt")
    steps = row.get("completions")
    labels = row.get("labels")
    if not isinstance(prompt, str):
        raise FormatError(f"row {row_name(row)}: prompt is not a string")
    if steps is None or labels is None:
        raise FormatError(f"row {row_name(row)}: completions or labels is null")
    steps, labels = list(steps), list(labels)
    if len(steps) != len(labels):
        raise FormatError(f"row {row_name(row)}: {len(steps)} steps but {len(labels)} labels")
    if any(not isinstance(s, str) for s in steps):
        raise FormatError(f"row {row_name(row)}: a step is not a string")
    if any(label is None for label in labels):
        raise FormatError(f"row {row_name(row)}: a hard label is null")
    return prompt, steps, [bool(label) for label in labels]


def remove_token(prompt: str, steps: list[str], token: str, stats: Stats | None, prefix: str) -> tuple[str, list[str]]:
    """Delete `token` from the prompt and steps, counting prompts, steps and rows changed."""
    new_prompt = prompt.replace(token, "")
    new_steps = [s.replace(token, "") for s in steps]
    prompts = int(new_prompt != prompt)
    changed = sum(a != b for a, b in zip(steps, new_steps, strict=True))
    count_rule(stats, f"{prefix}_removed_prompts", prompts)
    count_rule(stats, f"{prefix}_removed_steps", changed)
    count_rule(stats, f"{prefix}_removed_rows", int(bool(prompts or changed)))
    return new_prompt, new_steps


def f32(value: float) -> float:
    """The shortest decimal that round-trips the float32 value (0.33333334, not 0.3333333432674408)."""
    return float(str(np.float32(value)))


def row_meta(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's `meta` as a dict, whether stored as JSON text or a mapping; {} when absent or unreadable."""
    meta = row.get("meta")
    if isinstance(meta, str) and meta:
        try:
            parsed = json.loads(meta)
        except json.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return dict(meta) if isinstance(meta, Mapping) else {}


def digest(*parts: Any, length: int = 24) -> str:
    """A stable id: the first `length` hex digits of the SHA-256 of the parts as canonical JSON."""
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:length]


def import_config_hash(fmt: str, **options: Any) -> str:
    """The `config_hash` of imported rows: what was imported and with which rule."""
    return digest("import", fmt, options, length=16)


def answer_after(text: str, marker: str) -> str | None:
    """The text after the last `marker` (a final answer), stripped; None without the marker or text after it."""
    _, found, tail = text.rpartition(marker)
    return (tail.strip() or None) if found else None


def path_row(
    *,
    row_id: str,
    problem_id: str,
    source: str,
    prompt: str,
    steps: list[str],
    labels: list[bool],
    label_policy: str,
    config_hash: str,
    search: str,
    mc_values: list[float | None] | None = None,
    truncated_after_first_error: bool = False,
    is_terminal: bool = False,
    final_answer: str | None = None,
    outcome_correct: bool | None = None,
    gold_answer: str | None = None,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """A PATHS row; imports carry no MC tallies, so those lists hold nulls unless soft values came with the row."""
    return {
        "id": row_id,
        "problem_id": problem_id,
        "source": source,
        "prompt": prompt,
        "completions": steps,
        "labels": labels,
        "mc_values": mc_values if mc_values is not None else [None] * len(steps),
        "n_correct": [None] * len(steps),
        "n_rollouts": [None] * len(steps),
        "label_policy": label_policy,
        "first_error_index": next((i for i, ok in enumerate(labels) if not ok), -1),
        "truncated_after_first_error": truncated_after_first_error,
        "is_terminal": is_terminal,
        "final_answer": final_answer,
        "outcome_correct": outcome_correct,
        "gold_answer": gold_answer,
        "policy_model": None,
        "search": search,
        "seed": None,
        "config_hash": config_hash,
        "schema_version": SCHEMA_VERSION,
        "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False),
    }
