"""TRL's stepwise supervision (`PRMTrainer`, docs/methods.md §3.1): the export and its step-separator rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pyarrow as pa

from schemas.formats.common import FormatError, Stats, count_rule, row_name, steps_and_labels

TRL_SEPARATOR = "\n"  # PRMConfig.step_separator default (docs/methods.md §3.1)

# TRL reads `prompt`/`completions`/`labels` as they are (§3.1); bool labels keep its int() cast exact.
TRL_SCHEMA = pa.schema(
    [
        ("prompt", pa.large_string()),
        ("completions", pa.list_(pa.large_string())),
        ("labels", pa.list_(pa.bool_())),
    ]
)


def replace_separator(step: str, separator: str) -> str:
    """`step` with every occurrence of `separator` replaced by a space (TRL's export rule; the PRM trainer's too)."""
    # Each pass removes non-space characters only, so the loop ends; " " itself is not in `separator`.
    while separator in step:
        step = step.replace(separator, " ")
    return step


def to_trl(
    row: Mapping[str, Any],
    separator: str = TRL_SEPARATOR,
    on_separator: Literal["replace", "error"] = "replace",
    stats: Stats | None = None,
) -> dict[str, Any] | None:
    """TRL stepwise supervision `{"prompt", "completions", "labels"}` (bool labels), or None for a row without steps.

    TRL appends `separator` after every step and labels its last token (§3.1 tokenize_row); a separator inside a
    step would misalign the documented inference recipe, so it is replaced by a space or refused.
    """
    if on_separator not in ("replace", "error"):
        raise ValueError(f"on_separator must be 'replace' or 'error', not {on_separator!r}")
    if not separator:
        raise ValueError("the step separator must not be empty")
    if on_separator == "replace" and " " in separator:
        raise ValueError("a separator containing a space cannot be replaced by a space; use on_separator='error'")
    prompt, steps, labels = steps_and_labels(row)
    if not steps:
        count_rule(stats, "empty_skipped_rows")
        return None
    hits = [i for i, s in enumerate(steps) if separator in s]
    if hits and on_separator == "error":
        raise FormatError(
            f"row {row_name(row)}: step {hits[0]} contains the step separator {separator!r}; "
            "choose another separator (--separator, then PRMConfig(step_separator=...)) or replace it"
        )
    for i in hits:
        steps[i] = replace_separator(steps[i], separator)
    count_rule(stats, "separator_replaced_steps", len(hits))
    count_rule(stats, "separator_replaced_rows", int(bool(hits)))
    return {"prompt": prompt, "completions": steps, "labels": labels}
