"""PRM800K labelled solutions (docs/methods.md §3.4): the ±1 export and the import of phase 1 and 2 records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from schemas.formats.common import (
    FormatError,
    Stats,
    answer_after,
    count_rule,
    digest,
    import_config_hash,
    path_row,
    steps_and_labels,
)

PRM800K_ANSWER_MARKER = "# Answer"  # PRM800K final steps end "...\n\n# Answer\n\n29" (§3.4)

NEUTRAL_POLICIES = {
    "negative": "prm800k:rating==1",  # TRL's examples/datasets/prm800k.py (§3.1)
    "positive": "prm800k:rating>=0",  # Qwen2.5-Math-7B-PRM800K (§3.3)
    "drop": "prm800k:rating==1,neutral=drop",  # a neutral step ends the path before it
}

Neutral = Literal["negative", "positive", "drop"]


def to_prm800k(row: Mapping[str, Any], stats: Stats | None = None) -> dict[str, Any] | None:
    """A PRM800K-style labelled solution (§3.4 fields, §3.6 converter): one completion per step, rated ±1.

    `finish_reason` is `found_error` when a label is False, `solution` when every label is True and the path is
    terminal, and `give_up` for an all-True path that never reached an answer (so it does not read as solved).
    No wall-clock time is written (timestamp/total_time null) so the bytes stay deterministic.
    """
    prompt, steps, labels = steps_and_labels(row)
    if not steps:
        count_rule(stats, "empty_skipped_rows")
        return None
    if not all(labels):
        finish_reason = "found_error"
    elif row.get("is_terminal", True):
        finish_reason = "solution"
    else:
        finish_reason = "give_up"
        count_rule(stats, "non_terminal_give_up_rows")
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
    problem_id = "prm800k/" + digest(problem, length=16)
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
                    count_rule(stats, "unrated_alternatives_skipped")
                    continue
                branch_label = _rating_label(completion["rating"], neutral)
                if branch_label is None:
                    count_rule(stats, "neutral_alternatives_dropped")
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
            count_rule(stats, "neutral_paths_cut")
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
        main_id = digest(problem_id, steps, *identity)
        rows.append(
            path_row(
                row_id=main_id,
                steps=steps,
                labels=labels,
                truncated_after_first_error=finish_reason == "found_error" and not labels[-1],
                is_terminal=finish_reason == "solution" and complete,
                final_answer=answer_after(steps[-1], PRM800K_ANSWER_MARKER),
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
        final_answer = answer_after(branch["text"], PRM800K_ANSWER_MARKER)
        # A rated step that states the final answer grades it: +1 correct, -1 wrong, 0 undecided (§3.4).
        outcome = {1: True, -1: False}.get(branch["rating"]) if final_answer is not None else None
        rows.append(
            path_row(
                row_id=digest(problem_id, branch_steps, *identity, branch["t"], branch["j"]),
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
    count_rule(stats, "alternative_rows", len(branches))
    return rows
