"""Qwen2.5-Math-PRM messages (docs/methods.md §3.3): `<extra_0>` after every step, one label per `<extra_0>`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from schemas.formats.common import Stats, count_rule, remove_token, steps_and_labels

QWEN_STEP_TOKEN = "<extra_0>"  # a single special token in the Qwen2.5 tokenizer, id 151651 (§3.3)
QWEN_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."  # §3.3

QWEN_PRM_SCHEMA = pa.schema(
    [
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.large_string())]))),
        ("labels", pa.list_(pa.bool_())),
    ]
)


def to_qwen_prm(
    row: Mapping[str, Any], system: str = QWEN_SYSTEM_PROMPT, stats: Stats | None = None
) -> dict[str, Any] | None:
    """Qwen2.5-Math-PRM messages with `<extra_0>` after every step, and one label per `<extra_0>` (§3.3)."""
    prompt, steps, labels = steps_and_labels(row)
    if not steps:
        count_rule(stats, "empty_skipped_rows")
        return None
    # The PRM scores at every `<extra_0>` token, so one inside the text would add a phantom step (§3.3).
    prompt, steps = remove_token(prompt, steps, QWEN_STEP_TOKEN, stats, "step_token")
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": QWEN_STEP_TOKEN.join(steps) + QWEN_STEP_TOKEN},
    ]
    return {"messages": messages, "labels": labels}
