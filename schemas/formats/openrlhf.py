"""OpenRLHF PRM rows (docs/methods.md §3.2): the export (hard or soft labels) and its placeholder checks."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from schemas.formats.common import FormatError, Stats, count_rule, f32, remove_token, row_name, steps_and_labels

OPENRLHF_PLACEHOLDER = "ки"  # Math-Shepherd step tag, OpenRLHF --placeholder_token (§3.2)
OPENRLHF_REWARD_TOKENS = ("+", "-")  # positive first: soft labels are P(first token) (§3.2, PR #502)


def _soft_values(row: Mapping[str, Any], labels: list[bool], null_mc: str, stats: Stats | None) -> list[float] | None:
    values = row.get("mc_values")
    values = [None] * len(labels) if values is None else list(values)
    if len(values) != len(labels):
        raise FormatError(f"row {row_name(row)}: {len(values)} mc_values but {len(labels)} labels")
    missing = [i for i, v in enumerate(values) if v is None or not math.isfinite(v)]
    if missing:
        if null_mc == "skip":
            count_rule(stats, "null_mc_skipped_rows")
            return None
        if null_mc == "error":
            raise FormatError(f"row {row_name(row)}: mc_values[{missing[0]}] is null (soft labels allow no nulls)")
        for i in missing:
            values[i] = 1.0 if labels[i] else 0.0
        count_rule(stats, "null_mc_filled_steps", len(missing))
        count_rule(stats, "null_mc_filled_rows")
    for i, v in enumerate(values):
        if not 0.0 <= v <= 1.0:
            raise FormatError(f"row {row_name(row)}: mc_values[{i}] = {v} is outside [0, 1]")
    return [f32(v) for v in values]


def to_openrlhf(
    row: Mapping[str, Any],
    soft: bool = False,
    null_mc: Literal["skip", "hard", "error"] = "skip",
    placeholder: str = OPENRLHF_PLACEHOLDER,
    reward_tokens: Sequence[str] = OPENRLHF_REWARD_TOKENS,
    stats: Stats | None = None,
) -> dict[str, Any] | None:
    """OpenRLHF PRM row `{"input", "label"}` (§3.2): one placeholder after each step; "+"/"-" or MC floats.

    Returns None for a row without steps, or (soft, `null_mc="skip"`) a row with a null MC value.
    """
    if null_mc not in ("skip", "hard", "error"):
        raise ValueError(f"null_mc must be 'skip', 'hard' or 'error', not {null_mc!r}")
    if len(reward_tokens) != 2:
        raise ValueError("OpenRLHF PRM rows need exactly two reward tokens, positive first")
    prompt, steps, labels = steps_and_labels(row)
    if not steps:
        count_rule(stats, "empty_skipped_rows")
        return None
    if soft:
        label: list[Any] | None = _soft_values(row, labels, null_mc, stats)
        if label is None:
            return None
    else:
        label = [reward_tokens[0] if ok else reward_tokens[1] for ok in labels]
    # OpenRLHF finds steps by the placeholder's token id, so a stray one would shift every label (§3.6).
    prompt, steps = remove_token(prompt, steps, placeholder, stats, "placeholder")
    text = prompt + " " + "\n".join(f"{step} {placeholder}" for step in steps)
    return {"input": text, "label": label}


def _in_text_ids(tokenizer: Any, placeholder: str) -> list[int]:
    """The ids `" " + placeholder` gets where to_openrlhf writes it: after a step's last character."""
    before = tokenizer.encode("5", add_special_tokens=False)
    after = tokenizer.encode("5 " + placeholder, add_special_tokens=False)
    if after[: len(before)] == before:
        return after[len(before) :]
    return tokenizer.encode(" " + placeholder, add_special_tokens=False)


def placeholder_problem(tokenizer: Any, placeholder: str = OPENRLHF_PLACEHOLDER) -> str | None:
    """Why OpenRLHF would mis-place the labels of a `to_openrlhf` export under `tokenizer`; None when it would not.

    OpenRLHF takes the placeholder's id from `tokenizer.encode(placeholder)` (asserting one id) and labels every
    position of that id in the tokenized `input` (§3.2), where each placeholder follows a space. So the bare
    placeholder must be one id, and `" " + placeholder` after a step must end in that id, with at most a space
    token before it (many byte-level BPE tokenizers merge the space into a different token instead).
    """
    bare = tokenizer.encode(placeholder, add_special_tokens=False)
    in_text = _in_text_ids(tokenizer, placeholder)
    if len(bare) == 1 and in_text[-1:] == bare and bare[0] not in in_text[:-1]:
        if not in_text[:-1] or not tokenizer.decode(in_text[:-1]).strip():
            return None
    return (
        f"placeholder {placeholder!r} is not one token: OpenRLHF reads its id from {placeholder!r} -> {bare}, "
        f"but ' {placeholder}' after a step encodes to {in_text}"
    )


def placeholder_candidates(tokenizer: Any, limit: int = 3) -> list[str]:
    """Up to `limit` of the tokenizer's added or special tokens that pass `placeholder_problem` (not BOS/EOS/pad)."""
    taken = {getattr(tokenizer, name, None) for name in ("bos_token", "eos_token", "pad_token")}
    names = list(getattr(tokenizer, "all_special_tokens", [])) + list(getattr(tokenizer, "get_added_vocab", dict)())
    found: list[str] = []
    for name in dict.fromkeys(names):
        if name not in taken and name.strip() == name and placeholder_problem(tokenizer, name) is None:
            found.append(name)
            if len(found) == limit:
                break
    return found


def check_openrlhf_row(
    row: Mapping[str, Any],
    placeholder: str = OPENRLHF_PLACEHOLDER,
    reward_tokens: Sequence[str] = OPENRLHF_REWARD_TOKENS,
    input_key: str = "input",
    label_key: str = "label",
    tokenizer: Any = None,
) -> list[str]:
    """The ways `row` breaks OpenRLHF's PRM dataset contract (v0.4.5–v0.9.5, §3.2); empty when it is valid.

    Checks: `input` is a string; `label` is a non-empty list of reward tokens (hard) or of floats in [0, 1]
    (soft, exactly two reward tokens); one placeholder per label. With a `tokenizer`, also what the dataset
    asserts at token level: the placeholder and each reward token encode to one token, and the placeholder's
    id occurs once per label in the tokenized input.
    """
    problems: list[str] = []
    text = row.get(input_key)
    labels = row.get(label_key)
    if not isinstance(text, str):
        problems.append(f"{input_key!r} is not a string")
    if not isinstance(labels, list) or not labels:
        problems.append(f"{label_key!r} is not a non-empty list")
        return problems
    if all(isinstance(v, str) for v in labels):
        bad = sorted({v for v in labels if v not in reward_tokens})
        if bad:
            problems.append(f"hard labels {bad} are not reward tokens {list(reward_tokens)}")
    elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in labels):
        if len(reward_tokens) != 2:
            problems.append("soft labels need exactly two reward tokens (positive first)")
        outside = [v for v in labels if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
        if outside:
            problems.append(f"soft labels outside [0, 1]: {outside[:3]}")
    else:
        problems.append("labels mix types: all reward-token strings (hard) or all floats (soft)")
    if not isinstance(text, str):
        return problems
    count = text.count(placeholder)
    if count != len(labels):
        problems.append(f"{count} placeholders {placeholder!r} but {len(labels)} labels")
    if tokenizer is not None:
        placeholder_ids = tokenizer.encode(placeholder, add_special_tokens=False)
        if len(placeholder_ids) != 1:
            problems.append(f"placeholder {placeholder!r} encodes to {len(placeholder_ids)} tokens, not 1")
        else:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            found = sum(1 for i in ids if i == placeholder_ids[0])
            if found != len(labels):
                problems.append(f"{found} placeholder tokens in the tokenized input but {len(labels)} labels")
        for token in reward_tokens:
            n = len(tokenizer.encode(token, add_special_tokens=False))
            if n != 1:
                problems.append(f"reward token {token!r} encodes to {n} tokens, not 1")
    return problems
