"""Converters between labelled-path rows (`schemas.tables.PATHS`) and the formats PRM trainers read.

Pure functions: no I/O, no Beam, no model. Exports follow algorithms.md §3.6 "Converters"; imports turn
PRM800K (§3.4) and Math-Shepherd (§2.1) rows into PATHS rows so human and MC data can be merged and relabelled.

Stated rules. Text is never changed silently: every rule application is counted in the optional `stats`
mapping under the key named here, and `pipelines.export` reports the totals.

| format | rule | keys in `stats` |
|---|---|---|
| TRL | a step containing the step separator ("\\n" by default) gets every occurrence replaced by one space; with `on_separator="error"` the row is refused instead (pick another `--separator` and pass it to `PRMConfig(step_separator=...)`) | `separator_replaced_rows`, `separator_replaced_steps` |
| OpenRLHF, Math-Shepherd | every pre-existing placeholder (`ки` or the one chosen) in the prompt or a step is deleted | `placeholder_removed_rows`, `placeholder_removed_prompts`, `placeholder_removed_steps` |
| OpenRLHF `--soft` | a row with a null MC value is skipped (`null_mc="skip"`), filled from its hard label as 1.0/0.0 (`"hard"`) or refused (`"error"`) | `null_mc_skipped_rows`, `null_mc_filled_rows`, `null_mc_filled_steps` |
| Qwen2.5-Math-PRM | every pre-existing `<extra_0>` in the prompt or a step is deleted | `step_token_removed_rows`, `step_token_removed_prompts`, `step_token_removed_steps` |
| PRM800K export | ratings are +1/-1 from the hard labels; an all-True path that is not terminal finishes `give_up`, not `solution` | `non_terminal_give_up_rows` |
| all exports | a row without steps is skipped (it carries no step label) | `empty_skipped_rows` |
| PRM800K import | neutral (0) ratings follow `neutral`; unrated alternatives are skipped; `drop` cuts a path before a neutral step | `neutral_paths_cut`, `neutral_alternatives_dropped`, `unrated_alternatives_skipped`, `alternative_rows` |
| Math-Shepherd import | placeholders before "Step 1:" (annotation errors in the question) are dropped with their labels | `placeholder_in_prompt_dropped` |
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from schemas.tables import SCHEMA_VERSION

TRL_SEPARATOR = "\n"  # PRMConfig.step_separator default (algorithms.md §3.1)
OPENRLHF_PLACEHOLDER = "ки"  # Math-Shepherd step tag, OpenRLHF --placeholder_token (§3.2)
OPENRLHF_REWARD_TOKENS = ("+", "-")  # positive first: soft labels are P(first token) (§3.2, PR #502)
QWEN_STEP_TOKEN = "<extra_0>"  # a single special token in the Qwen2.5 tokenizer, id 151651 (§3.3)
QWEN_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."  # §3.3
PRM800K_ANSWER_MARKER = "# Answer"  # PRM800K final steps end "...\n\n# Answer\n\n29" (§3.4)
MATH_SHEPHERD_ANSWER_MARKER = "The answer is:"  # Math-Shepherd final step (§2.2)

# TRL reads `prompt`/`completions`/`labels` as they are (§3.1); bool labels keep its int() cast exact.
TRL_SCHEMA = pa.schema(
    [
        ("prompt", pa.large_string()),
        ("completions", pa.list_(pa.large_string())),
        ("labels", pa.list_(pa.bool_())),
    ]
)

QWEN_PRM_SCHEMA = pa.schema(
    [
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.large_string())]))),
        ("labels", pa.list_(pa.bool_())),
    ]
)

NEUTRAL_POLICIES = {
    "negative": "prm800k:rating==1",  # TRL's examples/datasets/prm800k.py (§3.1)
    "positive": "prm800k:rating>=0",  # Qwen2.5-Math-7B-PRM800K (§3.3)
    "drop": "prm800k:rating==1,neutral=drop",  # a neutral step ends the path before it
}

Neutral = Literal["negative", "positive", "drop"]
Stats = MutableMapping[str, int]


class FormatError(ValueError):
    """A row that a converter or importer refuses, with the reason."""


def _count(stats: Stats | None, key: str, n: int = 1) -> None:
    if stats is not None and n:
        stats[key] = stats.get(key, 0) + n


def _row_name(row: Mapping[str, Any]) -> str:
    return str(row.get("id") or row.get("problem_id") or "<row without id>")


def _steps_and_labels(row: Mapping[str, Any]) -> tuple[str, list[str], list[bool]]:
    prompt = row.get("prompt")
    steps = row.get("completions")
    labels = row.get("labels")
    if not isinstance(prompt, str):
        raise FormatError(f"row {_row_name(row)}: prompt is not a string")
    if steps is None or labels is None:
        raise FormatError(f"row {_row_name(row)}: completions or labels is null")
    steps, labels = list(steps), list(labels)
    if len(steps) != len(labels):
        raise FormatError(f"row {_row_name(row)}: {len(steps)} steps but {len(labels)} labels")
    if any(not isinstance(s, str) for s in steps):
        raise FormatError(f"row {_row_name(row)}: a step is not a string")
    if any(label is None for label in labels):
        raise FormatError(f"row {_row_name(row)}: a hard label is null")
    return prompt, steps, [bool(label) for label in labels]


def _remove_token(prompt: str, steps: list[str], token: str, stats: Stats | None, prefix: str) -> tuple[str, list[str]]:
    """Delete `token` from the prompt and steps, counting prompts, steps and rows changed."""
    new_prompt = prompt.replace(token, "")
    new_steps = [s.replace(token, "") for s in steps]
    prompts = int(new_prompt != prompt)
    changed = sum(a != b for a, b in zip(steps, new_steps, strict=True))
    _count(stats, f"{prefix}_removed_prompts", prompts)
    _count(stats, f"{prefix}_removed_steps", changed)
    _count(stats, f"{prefix}_removed_rows", int(bool(prompts or changed)))
    return new_prompt, new_steps


def _f32(value: float) -> float:
    """The shortest decimal that round-trips the float32 value (0.33333334, not 0.3333333432674408)."""
    return float(str(np.float32(value)))


# ---------------------------------------------------------------- exports (algorithms.md §3.6 "Converters")


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
    prompt, steps, labels = _steps_and_labels(row)
    if not steps:
        _count(stats, "empty_skipped_rows")
        return None
    hits = [i for i, s in enumerate(steps) if separator in s]
    if hits and on_separator == "error":
        raise FormatError(
            f"row {_row_name(row)}: step {hits[0]} contains the step separator {separator!r}; "
            "choose another separator (--separator, then PRMConfig(step_separator=...)) or replace it"
        )
    for i in hits:
        steps[i] = replace_separator(steps[i], separator)
    _count(stats, "separator_replaced_steps", len(hits))
    _count(stats, "separator_replaced_rows", int(bool(hits)))
    return {"prompt": prompt, "completions": steps, "labels": labels}


def _soft_values(row: Mapping[str, Any], labels: list[bool], null_mc: str, stats: Stats | None) -> list[float] | None:
    values = row.get("mc_values")
    values = [None] * len(labels) if values is None else list(values)
    if len(values) != len(labels):
        raise FormatError(f"row {_row_name(row)}: {len(values)} mc_values but {len(labels)} labels")
    missing = [i for i, v in enumerate(values) if v is None or not math.isfinite(v)]
    if missing:
        if null_mc == "skip":
            _count(stats, "null_mc_skipped_rows")
            return None
        if null_mc == "error":
            raise FormatError(f"row {_row_name(row)}: mc_values[{missing[0]}] is null (soft labels allow no nulls)")
        for i in missing:
            values[i] = 1.0 if labels[i] else 0.0
        _count(stats, "null_mc_filled_steps", len(missing))
        _count(stats, "null_mc_filled_rows")
    for i, v in enumerate(values):
        if not 0.0 <= v <= 1.0:
            raise FormatError(f"row {_row_name(row)}: mc_values[{i}] = {v} is outside [0, 1]")
    return [_f32(v) for v in values]


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
    prompt, steps, labels = _steps_and_labels(row)
    if not steps:
        _count(stats, "empty_skipped_rows")
        return None
    if soft:
        label: list[Any] | None = _soft_values(row, labels, null_mc, stats)
        if label is None:
            return None
    else:
        label = [reward_tokens[0] if ok else reward_tokens[1] for ok in labels]
    # OpenRLHF finds steps by the placeholder's token id, so a stray one would shift every label (§3.6).
    prompt, steps = _remove_token(prompt, steps, placeholder, stats, "placeholder")
    text = prompt + " " + "\n".join(f"{step} {placeholder}" for step in steps)
    return {"input": text, "label": label}


def to_math_shepherd(
    row: Mapping[str, Any], placeholder: str = OPENRLHF_PLACEHOLDER, stats: Stats | None = None
) -> dict[str, Any] | None:
    """The original Math-Shepherd row `{"input", "label", "task"}` (§2.1): `label` is `input` with tags as +/-."""
    prompt, steps, labels = _steps_and_labels(row)
    if not steps:
        _count(stats, "empty_skipped_rows")
        return None
    prompt, steps = _remove_token(prompt, steps, placeholder, stats, "placeholder")
    text = prompt + " " + "\n".join(f"{step} {placeholder}" for step in steps)
    tagged = prompt + " " + "\n".join(f"{step} {'+' if ok else '-'}" for step, ok in zip(steps, labels, strict=True))
    meta = _meta(row)
    return {"input": text, "label": tagged, "task": meta.get("task") or row.get("source") or ""}


def to_qwen_prm(
    row: Mapping[str, Any], system: str = QWEN_SYSTEM_PROMPT, stats: Stats | None = None
) -> dict[str, Any] | None:
    """Qwen2.5-Math-PRM messages with `<extra_0>` after every step, and one label per `<extra_0>` (§3.3)."""
    prompt, steps, labels = _steps_and_labels(row)
    if not steps:
        _count(stats, "empty_skipped_rows")
        return None
    # The PRM scores at every `<extra_0>` token, so one inside the text would add a phantom step (§3.3).
    prompt, steps = _remove_token(prompt, steps, QWEN_STEP_TOKEN, stats, "step_token")
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": QWEN_STEP_TOKEN.join(steps) + QWEN_STEP_TOKEN},
    ]
    return {"messages": messages, "labels": labels}


def to_prm800k(row: Mapping[str, Any], stats: Stats | None = None) -> dict[str, Any] | None:
    """A PRM800K-style labelled solution (§3.4 fields, §3.6 converter): one completion per step, rated ±1.

    `finish_reason` is `found_error` when a label is False, `solution` when every label is True and the path is
    terminal, and `give_up` for an all-True path that never reached an answer (so it does not read as solved).
    No wall-clock time is written (timestamp/total_time null) so the bytes stay deterministic.
    """
    prompt, steps, labels = _steps_and_labels(row)
    if not steps:
        _count(stats, "empty_skipped_rows")
        return None
    if not all(labels):
        finish_reason = "found_error"
    elif row.get("is_terminal", True):
        finish_reason = "solution"
    else:
        finish_reason = "give_up"
        _count(stats, "non_terminal_give_up_rows")
    return {
        "labeler": "stepforge",
        "timestamp": None,
        "generation": None,
        "is_quality_control_question": False,
        "is_initial_screening_question": False,
        "question": {
            "problem": prompt,
            "ground_truth_solution": None,
            "ground_truth_answer": row.get("gold_answer"),
            "pre_generated_steps": None,
            "pre_generated_answer": None,
            "pre_generated_verifier_score": None,
        },
        "label": {
            "steps": [
                {
                    "completions": [{"text": step, "rating": 1 if ok else -1, "flagged": None}],
                    "human_completion": None,
                    "chosen_completion": 0,
                }
                for step, ok in zip(steps, labels, strict=True)
            ],
            "total_time": None,
            "finish_reason": finish_reason,
        },
    }


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


# ---------------------------------------------------------------- imports into PATHS rows


def _meta(row: Mapping[str, Any]) -> dict[str, Any]:
    meta = row.get("meta")
    if isinstance(meta, str) and meta:
        try:
            parsed = json.loads(meta)
        except json.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return dict(meta) if isinstance(meta, Mapping) else {}


def _digest(*parts: Any, length: int = 24) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:length]


def import_config_hash(fmt: str, **options: Any) -> str:
    """The `config_hash` of imported rows: what was imported and with which rule."""
    return _digest("import", fmt, options, length=16)


def _answer_after(text: str, marker: str) -> str | None:
    _, found, tail = text.rpartition(marker)
    return (tail.strip() or None) if found else None


def _path_row(
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


def _rating_label(rating: int, neutral: str) -> bool | None:
    """PRM800K rating -> hard label; None means "drop" for a neutral rating (§3.3 "Label convention")."""
    if rating == 0:
        return {"negative": False, "positive": True, "drop": None}[neutral]
    return rating > 0


def _human_text(human: Any) -> str:
    return str(human.get("text", "")) if isinstance(human, Mapping) else str(human)


def from_prm800k(
    record: Mapping[str, Any],
    neutral: Neutral = "negative",
    alternatives: bool = False,
    stats: Stats | None = None,
) -> list[dict[str, Any]]:
    """PATHS rows from one PRM800K line (phase 1 or 2, §3.4): the labelled trajectory, then (optionally) branches.

    Trajectory (§3.4 reconstruction): at each step the chosen completion, else the human completion; a human
    step is True (a human-written +1 step) unless it carries a `corrected_rating`. In phase 2 the step where the
    labeller stopped (no chosen completion) is the pre-generated step, normally the first error. The trajectory
    ends before a step with no usable label (phase-1 `give_up`, unrated). Ratings map to labels by `neutral`:
    0 is False (`negative`, TRL), True (`positive`, Qwen2.5-Math-PRM), or ends the path before it (`drop`).

    With `alternatives`, every rated non-chosen completion also becomes its own path, prefix + that step, as
    TRL's `examples/datasets/prm800k.py` does (phase 1's negatives live there). The whole record is kept in the
    trajectory row's `meta["prm800k"]`, so ratings, flags and timing survive losslessly.
    """
    if neutral not in NEUTRAL_POLICIES:
        raise ValueError(f"neutral must be one of {sorted(NEUTRAL_POLICIES)}, not {neutral!r}")
    question = record.get("question")
    label = record.get("label")
    if not isinstance(question, Mapping) or not isinstance(question.get("problem"), str):
        raise FormatError("PRM800K record without question.problem")
    if not isinstance(label, Mapping) or not isinstance(label.get("steps") or [], list):
        raise FormatError("PRM800K record without label.steps")
    problem = question["problem"]
    problem_id = "prm800k/" + _digest(problem, length=16)
    policy = NEUTRAL_POLICIES[neutral]
    config_hash = import_config_hash("prm800k", neutral=neutral, alternatives=alternatives)
    pre_generated = question.get("pre_generated_steps")
    phase = 2 if pre_generated is not None else 1
    finish_reason = label.get("finish_reason")
    identity = (record.get("labeler"), record.get("timestamp"))  # the same solution is labelled by many labellers
    common = {
        "problem_id": problem_id,
        "source": "prm800k",
        "prompt": problem,
        "label_policy": policy,
        "config_hash": config_hash,
        "search": f"prm800k:phase{phase}",
        "gold_answer": question.get("ground_truth_answer"),
    }

    steps: list[str] = []
    labels: list[bool] = []
    ratings: list[int | None] = []
    origins: list[str] = []
    branches: list[dict[str, Any]] = []
    stopped: str | None = None
    raw_steps = label.get("steps") or []
    for t, step in enumerate(raw_steps):
        if not isinstance(step, Mapping):
            raise FormatError(f"step {t} is not an object")
        completions = step.get("completions") or []
        chosen = step.get("chosen_completion")
        human = step.get("human_completion")
        used: int | None = None  # the completion on the trajectory at this step, if any
        text: str | None = None
        rating: int | None = None
        origin = ""
        if chosen is not None:
            if not 0 <= chosen < len(completions):
                raise FormatError(f"step {t}: chosen_completion {chosen} out of range")
            used, origin = chosen, f"chosen:{chosen}"
        elif human is not None:
            text = _human_text(human)
            rating = human.get("corrected_rating") if isinstance(human, Mapping) else None
            origin = "human"
        elif phase == 2 and t < len(pre_generated):
            # Phase 2 stops at the first error with no chosen completion: the rated step is the pre-generated one.
            used = next((j for j, c in enumerate(completions) if c.get("text") == pre_generated[t]), None)
            origin = f"pre_generated:{used}"
        if used is not None:
            text, rating = completions[used].get("text", ""), completions[used].get("rating")
        if alternatives:
            for j, completion in enumerate(completions):
                if j == used:
                    continue
                if completion.get("rating") is None:
                    _count(stats, "unrated_alternatives_skipped")
                    continue
                branch_label = _rating_label(completion["rating"], neutral)
                if branch_label is None:
                    _count(stats, "neutral_alternatives_dropped")
                    continue
                branches.append(
                    {
                        "t": t,
                        "j": j,
                        "text": completion.get("text", ""),
                        "rating": completion["rating"],
                        "label": branch_label,
                        "flagged": completion.get("flagged"),
                        "prefix": len(steps),
                    }
                )
        if text is None or (rating is None and origin != "human"):
            stopped = "unlabelled step"  # phase-1 give_up / bad_problem: the labeller stopped here
            break
        step_label = True if rating is None else _rating_label(rating, neutral)
        if step_label is None:
            stopped = "neutral step dropped"
            _count(stats, "neutral_paths_cut")
            break
        steps.append(text)
        labels.append(step_label)
        ratings.append(rating)
        origins.append(origin)
        if origin.startswith("pre_generated") and not step_label:
            break  # phase 2 labels nothing after the first error

    complete = stopped is None and len(steps) == len(raw_steps)
    rows: list[dict[str, Any]] = []
    main_id = None
    if steps:
        main_id = _digest(problem_id, steps, *identity)
        rows.append(
            _path_row(
                row_id=main_id,
                steps=steps,
                labels=labels,
                truncated_after_first_error=finish_reason == "found_error" and not labels[-1],
                is_terminal=finish_reason == "solution" and complete,
                final_answer=_answer_after(steps[-1], PRM800K_ANSWER_MARKER),
                outcome_correct=True if finish_reason == "solution" and complete else None,
                meta={
                    "import": {"format": "prm800k", "neutral": neutral, "alternatives": alternatives},
                    "path": {"ratings": ratings, "origins": origins, "stopped": stopped},
                    "prm800k": dict(record),
                },
                **common,
            )
        )
    for branch in branches:
        prefix = branch["prefix"]
        branch_steps = steps[:prefix] + [branch["text"]]
        branch_labels = labels[:prefix] + [branch["label"]]
        final_answer = _answer_after(branch["text"], PRM800K_ANSWER_MARKER)
        # A rated step that states the final answer grades it: +1 correct, -1 wrong, 0 undecided (§3.4).
        outcome = {1: True, -1: False}.get(branch["rating"]) if final_answer is not None else None
        rows.append(
            _path_row(
                row_id=_digest(problem_id, branch_steps, *identity, branch["t"], branch["j"]),
                steps=branch_steps,
                labels=branch_labels,
                truncated_after_first_error=not branch["label"],
                is_terminal=final_answer is not None,
                final_answer=final_answer,
                outcome_correct=outcome,
                meta={
                    "import": {"format": "prm800k", "neutral": neutral, "alternatives": True},
                    "alternative_of": main_id,
                    "step_index": branch["t"],
                    "completion_index": branch["j"],
                    "path": {
                        "ratings": ratings[:prefix] + [branch["rating"]],
                        "origins": origins[:prefix] + [f"alternative:{branch['j']}"],
                        "flagged": branch["flagged"],
                    },
                    "labeler": identity[0],
                    "timestamp": identity[1],
                },
                **common,
            )
        )
    _count(stats, "alternative_rows", len(branches))
    return rows


def from_math_shepherd(
    row: Mapping[str, Any], placeholder: str = OPENRLHF_PLACEHOLDER, stats: Stats | None = None
) -> dict[str, Any]:
    """A PATHS row from a Math-Shepherd row `{"input", "label", "task"}` (§2.1) or an OpenRLHF row (§3.2).

    `label` is either the Math-Shepherd string (`input` with each placeholder as "+"/"-") or a list of "+"/"-"
    (OpenRLHF hard) or of floats (OpenRLHF soft: kept as `mc_values`, labels `mc>0`). Steps keep their
    "Step k:" prefix; the prompt ends where "Step 1:" begins (as TRL's examples/datasets/math_shepherd.py).
    Placeholders before "Step 1:" are annotation errors inside the question: they and their labels are dropped
    and counted (`placeholder_in_prompt_dropped`). A row without a "Step 1:" boundary is refused.
    """
    text = row.get("input")
    tagged = row.get("label")
    if not isinstance(text, str) or placeholder not in text:
        raise FormatError(f"Math-Shepherd row without {placeholder!r} placeholders in 'input'")
    segments = text.split(placeholder)
    n_tags = len(segments) - 1
    mc_values: list[float | None] | None = None
    if isinstance(tagged, str):
        # The label string is `input` with each 2-character placeholder replaced by one tag character.
        if len(tagged) != len(text) - n_tags * (len(placeholder) - 1):
            raise FormatError("Math-Shepherd 'label' does not align with 'input'")
        tags, position = [], 0
        for segment in segments[:-1]:
            position += len(segment)
            tags.append(tagged[position])
            position += 1
        if any(tag not in OPENRLHF_REWARD_TOKENS for tag in tags):
            raise FormatError("Math-Shepherd 'label' has a tag other than '+'/'-' at a placeholder")
        labels = [tag == "+" for tag in tags]
    elif isinstance(tagged, list) and len(tagged) == n_tags and all(t in OPENRLHF_REWARD_TOKENS for t in tagged):
        labels = [tag == "+" for tag in tagged]
    elif (
        isinstance(tagged, list)
        and len(tagged) == n_tags
        and all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1 for v in tagged)
    ):
        mc_values = [_f32(v) for v in tagged]
        labels = [v > 0 for v in mc_values]  # Math-Shepherd hard estimation, Eq. 3 (§2.1)
    else:
        raise FormatError(f"'label' is neither a tagged string nor {n_tags} reward tokens or floats")
    if segments[-1].strip():
        raise FormatError(f"text after the last placeholder: {segments[-1].strip()[:40]!r}")

    first = next((k for k, s in enumerate(segments[:-1]) if "Step 1:" in s or "step 1:" in s), None)
    if first is None:
        raise FormatError("cannot find the prompt/first-step boundary ('Step 1:')")
    marker = "Step 1:" if "Step 1:" in segments[first] else "step 1:"
    head, _, first_step = segments[first].partition(marker)
    prompt = "".join(segments[:first]) + head
    steps = [marker + first_step] + list(segments[first + 1 : -1])
    steps = [s.strip() for s in steps]
    if first:
        _count(stats, "placeholder_in_prompt_dropped", first)
        labels = labels[first:]
        mc_values = mc_values[first:] if mc_values is not None else None
    prompt = prompt.strip()
    final_answer = _answer_after(steps[-1], MATH_SHEPHERD_ANSWER_MARKER)
    task = row.get("task")
    problem_id = "math_shepherd/" + _digest(prompt, length=16)
    return _path_row(
        row_id=_digest(problem_id, steps, labels),
        problem_id=problem_id,
        source="math_shepherd",
        prompt=prompt,
        steps=steps,
        labels=labels,
        mc_values=mc_values,
        label_policy="mc>0",  # the released labels are the hard estimate, any of N=8 completions correct (§2.1)
        config_hash=import_config_hash("math-shepherd"),
        search="math_shepherd",
        is_terminal=final_answer is not None,
        final_answer=final_answer,
        outcome_correct=labels[-1] if final_answer is not None else None,
        meta={
            "import": {"format": "math-shepherd"},
            "task": task,
            "placeholders_in_prompt_dropped": first,
        },
    )
