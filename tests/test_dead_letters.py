"""Containment as plain functions: one element's exception is its dead letter, all or nothing."""

import json

import apache_beam as beam
import pytest

from transforms.dead_letters import (
    MAX_REASON_CHARS,
    at_stage,
    contain,
    contain_group,
    failure_reason,
    problem_id_of,
)
from transforms.read import DEAD


def test_a_failing_element_emits_its_dead_letter_and_none_of_its_outputs():
    def work():
        yield "first output"
        with at_stage("verify"):
            raise ValueError("bad step")

    result = contain("label", work, "src", {"problem_id": "p1"})
    assert result.outputs == [] and result.dead["stage"] == "verify"
    assert result.dead["reason"] == "verify failed: ValueError: bad step"
    (emitted,) = list(result)
    assert isinstance(emitted, beam.pvalue.TaggedOutput) and emitted.tag == DEAD
    assert problem_id_of(result.dead) == "p1"
    ok = contain("label", lambda: ["a", "b"], "src", {})
    assert list(ok) == ["a", "b"] and ok.dead is None


def test_an_interrupt_is_not_contained_and_an_error_outside_inner_stages_takes_the_element_stage():
    with pytest.raises(KeyboardInterrupt):  # not an element's fault: it still stops the run
        contain("label", lambda: (_ for _ in ()).throw(KeyboardInterrupt()), "src", {})
    assert contain("search", lambda: [1 / 0], "src", {}).dead["stage"] == "search"


def test_reasons_are_one_bounded_line():
    reason = failure_reason("write", ValueError("x\n" * 10_000))
    assert "\n" not in reason and len(reason) < MAX_REASON_CHARS + 50


def test_a_group_is_retried_without_the_items_that_fail_alone():
    def work(items):
        if any(item < 0 for item in items):
            raise ValueError("negative")
        return sum(items)

    total, kept, dead = contain_group("filter", [1, -2, 3], work, lambda i: work([i]), lambda i: ("s", {"v": i}))
    assert (total, kept) == (4, [1, 3])
    assert [json.loads(d["row"]) for d in dead] == [{"v": -2}]
    assert dead[0]["reason"] == "filter failed: ValueError: negative"

    def together(items):  # fails only as a group: nobody to blame, so every item is a dead letter
        if len(items) > 1:
            raise RuntimeError("pair")
        return items

    result, kept, dead = contain_group("filter", [1, 2], together, lambda i: together([i]), lambda i: ("s", i))
    assert result is None and kept == [] and len(dead) == 2
