"""Math-Shepherd rows (docs/methods.md §2.1): the export with +/- tags and the import into PATHS rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.formats.common import (
    FormatError,
    Stats,
    answer_after,
    count_rule,
    digest,
    f32,
    import_config_hash,
    path_row,
    remove_token,
    row_meta,
    steps_and_labels,
)
from schemas.formats.openrlhf import OPENRLHF_PLACEHOLDER, OPENRLHF_REWARD_TOKENS

MATH_SHEPHERD_ANSWER_MARKER = "The answer is:"  # Math-Shepherd final step (§2.2)


def to_math_shepherd(
    row: Mapping[str, Any], placeholder: str = OPENRLHF_PLACEHOLDER, stats: Stats | None = None
) -> dict[str, Any] | None:
    """The original Math-Shepherd row `{"input", "label", "task"}` (§2.1): `label` is `input` with tags as +/-."""
    prompt, steps, labels = steps_and_labels(row)
    if not steps:
        count_rule(stats, "empty_skipped_rows")
        return None
    prompt, steps = remove_token(prompt, steps, placeholder, stats, "placeholder")
    text = prompt + " " + "\n".join(f"{step} {placeholder}" for step in steps)
    tagged = prompt + " " + "\n".join(f"{step} {'+' if ok else '-'}" for step, ok in zip(steps, labels, strict=True))
    meta = row_meta(row)
    return {"input": text, "label": tagged, "task": meta.get("task") or row.get("source") or ""}


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
        mc_values = [f32(v) for v in tagged]
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
        count_rule(stats, "placeholder_in_prompt_dropped", first)
        labels = labels[first:]
        mc_values = mc_values[first:] if mc_values is not None else None
    prompt = prompt.strip()
    final_answer = answer_after(steps[-1], MATH_SHEPHERD_ANSWER_MARKER)
    task = row.get("task")
    problem_id = "math_shepherd/" + digest(prompt, length=16)
    return path_row(
        row_id=digest(problem_id, steps, labels),
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
