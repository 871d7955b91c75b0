"""The three countings of labelled steps (annotators/cost.py) on hand-built trees and on scripted searches."""

from __future__ import annotations

from typing import Any

import pytest

from annotators.cost import (
    StepCounts,
    decided_steps,
    mc_step_counts,
    omegaprm_step_counts,
    omegaprm_table_counts,
    total,
)
from annotators.omegaprm import OmegaPRMConfig
from annotators.steps import split_steps
from domains.arithmetic import exact_first_error
from tests.test_omegaprm import LONG, ScriptedPolicy, run

# "5+6-2+8-3": 11, 9, 17, 14
S1, S2, S3, S4 = " Step 1: 5+6=11", " Step 2: 11-2=9", " Step 3: 9+8=17", " Step 4: 17-3=14"
GOLD = S1 + S2 + S3 + S4 + " Answer: 14"
WRONG_AT_3 = S1 + S2 + " Step 3: 9+8=18 Step 4: 18-3=15 Answer: 15"  # the selected rollout
WRONG_AT_4 = " Step 3: 9+8=17 Step 4: 17-3=13 Answer: 13"  # from node 1 (after S1 + S2)
TRUNCATED = " Step 3: 9+8=19 Step 4: 1"  # from node 1: stopped on the length limit, no answer


def rollout(
    text: str, correct: bool | None, finish: str = "stop", extracted: str | None = "x", selected: bool = False
) -> dict[str, Any]:
    return {"text": text, "correct": correct, "finish_reason": finish, "extracted": extracted, "selected": selected}


def node(node_id: int, parent: int | None, prefix: str, mc: float, source: str, rollouts=()) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "parent_id": parent,
        "prefix": prefix,
        "mc": mc,
        "mc_source": source,
        "rollouts": list(rollouts),
    }


def tree() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One search: root (MC 1/2), its wrong rollout searched by a probe after step 2 (MC 1/2, right) and one after
    step 3 (MC 0, left): first error at step 3, the terminal state at the rollout's end."""
    nodes = [
        node(0, None, "", 0.5, "monte_carlo", [rollout(GOLD, True), rollout(WRONG_AT_3, False, selected=True)]),
        node(1, 0, S1 + S2, 0.5, "monte_carlo", [rollout(S3 + S4 + " Answer: 14", True), rollout(WRONG_AT_4, False)]),
        node(2, 1, S1 + S2 + " Step 3: 9+8=18", 0.0, "monte_carlo", [rollout(" Step 4: 18-3=15 Answer: 15", False)]),
        node(3, 2, WRONG_AT_3, 0.0, "terminal_answer"),
    ]
    nodes[1]["rollouts"].append(rollout(TRUNCATED, False, finish="length", extracted=None))
    path = {
        "problem_id": "p",
        "completions": ["Step 1: 5+6=11", "Step 2: 11-2=9", "Step 3: 9+8=18"],
        "labels": [True, True, False],
    }
    return nodes, [path]


def test_three_countings_of_a_hand_built_search() -> None:
    nodes, paths = tree()
    counts = omegaprm_table_counts("p", nodes, paths)
    # (a) the emitted path: steps 1-3.
    assert counts.emitted == 3
    # (b) the selected rollout decides all 4 of its steps (T, T, F, F), the gold solution its 4 (T). Node 1's
    # unsearched wrong rollout is not counted, though its answer decides its step 4 (nor the truncated one).
    decided = decided_steps(nodes)
    gold = split_steps(GOLD)[0]
    wrong = split_steps(WRONG_AT_3)[0]
    assert decided == {
        tuple(gold[:1]): True,
        tuple(gold[:2]): True,
        tuple(gold[:3]): True,
        tuple(gold[:4]): True,
        tuple(wrong[:3]): False,
        tuple(wrong[:4]): False,
    }
    assert (counts.decided, counts.decided_true, counts.decided_false, counts.conflicts) == (6, 4, 2, 0)
    # Searched, it would be: its answer decides its step 4, a witness the ones before.
    nodes[1]["rollouts"][1]["selected"] = True
    assert decided_steps(nodes)[(*gold[:3], "Step 4: 17-3=13 Answer: 13")] is False
    nodes[1]["rollouts"][2]["selected"] = True  # the truncated text: no witness through it, no zero under it
    assert len(decided_steps(nodes)) == 7
    # (c) the tree's nodes but the root: two probes and the terminal state.
    assert counts.measured == 3
    assert counts.per_step(48) == {"emitted": 16.0, "decided": 8.0, "measured": 16.0}


def test_decisions_follow_the_rule_in_its_order() -> None:
    nodes, _ = tree()
    # Without the probe after step 3, the selected rollout's steps 3-4 are undecided but for its graded end.
    del nodes[2:]
    wrong = split_steps(WRONG_AT_3)[0]
    decided = decided_steps(nodes)
    assert tuple(wrong[:3]) not in decided and decided[tuple(wrong)] is False
    # A step's own measured value comes first: a prefix measured at 0 stays False though a correct rollout passes
    # through it; the steps after it on that rollout are True (a witness beats a measured zero, an estimate).
    nodes.append(node(2, 1, S1 + S2 + S3, 0.0, "monte_carlo"))
    decided = decided_steps(nodes)
    gold = split_steps(GOLD)[0]
    assert decided[tuple(gold[:3])] is False and decided[tuple(gold)] is True
    # A terminal state decides only itself: text after a wrong answer can still reach the gold one.
    assert decided[tuple(wrong)] is False
    # The pre-filter's samples are evidence from the root too: a correct one is a witness and its steps count.
    extra = " Step 1: 6+5=11 Step 2: 11+3=14 Answer: 14"  # a sloppy but correct solution
    assert ("Step 1: 6+5=11",) not in decided
    assert decided_steps(nodes, [rollout(extra, True)])[("Step 1: 6+5=11",)] is True


def test_mc_rows_are_counted_by_their_labels_and_values() -> None:
    rows = [
        {"problem_id": "p", "completions": ["a", "b", "c"], "labels": [True, True, False], "mc_values": [0.5, 0.2, 0]},
        {"problem_id": "p", "completions": ["a", "b", "d", "e"], "labels": [True] * 4, "mc_values": [0.5, 0.2, 1, 1]},
        {"problem_id": "q", "completions": ["a", "b"], "labels": [None, False], "mc_values": [None, 0.0]},
    ]
    counts = mc_step_counts(rows)
    assert counts == StepCounts(emitted=7, decided=6, measured=6, decided_true=4, decided_false=2)
    assert total([counts, counts]).decided == 12 and total([]) == StepCounts()
    assert StepCounts().per_step(10) == {"emitted": None, "decided": None, "measured": None}


@pytest.mark.parametrize("verbose", [False, True])
def test_emitted_rows_are_decided_steps_and_searches_decide_their_whole_rollout(verbose: bool) -> None:
    policy = ScriptedPolicy([LONG], verbose_wrong=verbose)
    result = run(OmegaPRMConfig(rollout_budget=None, positive_paths=True), policy, LONG)
    decided = decided_steps(result.nodes, result.prefilter)
    counts = omegaprm_step_counts(result)
    assert counts.conflicts == 0 and counts.decided == len(decided)
    assert counts.measured == len(result.nodes) - 1 > 0
    # (a) is part of (b), with the same labels (the step cut uses the same splitter).
    for path in result.paths:
        for t, label in enumerate(path["labels"]):
            assert decided[tuple(path["completions"][: t + 1])] is label
    # A search that located a first error at j decides every step of its rollout: True before j, False from j on.
    for selection in result.selections:
        if selection["outcome"] != "first_error":
            continue
        state = result.nodes[selection["node_id"]]
        steps = split_steps(state["prefix"] + state["rollouts"][selection["rollout_index"]]["text"])[0]
        first_error = exact_first_error(LONG, steps)
        assert [decided[tuple(steps[: t + 1])] for t in range(len(steps))] == [
            t < first_error for t in range(len(steps))
        ]
    assert counts.emitted < counts.decided


def test_a_step_decided_both_ways_is_a_conflict_not_a_decision() -> None:
    # The same steps reached through two texts that differ in whitespace only: one measured at 0 (" Step 1: ..."),
    # the other on a correct rollout without the leading space. Steps are compared by their text, so they clash.
    nodes, paths = tree()
    nodes[0]["rollouts"].append(rollout(GOLD[1:], True))
    nodes[2] = node(2, 1, S1 + S2 + S3, 0.0, "monte_carlo")
    counts = omegaprm_table_counts("p", nodes, paths)
    assert decided_steps(nodes)[tuple(split_steps(GOLD)[0][:3])] is None
    assert counts.conflicts == 1 and counts.decided == counts.decided_true + counts.decided_false
