"""HRM node compression, PAV / GenPRM progress labels and positive/negative balance on hand-made rows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from annotators.balance import balance, positive_ratio, row_key
from annotators.compression import and_labels, compress, merge_pairs
from annotators.progress import pav_advantages, pav_value, rpe_labels

# --- compression (docs/labellers.md §4) ---


def _path(labels: list[bool], mc: list[float], row_id: str = "row-1", **columns: Any) -> dict[str, Any]:
    row = {
        "id": row_id,
        "problem_id": "p1",
        "source": "gsm8k",
        "prompt": "Q",
        "completions": [f"s{i}" for i in range(len(labels))],
        "labels": labels,
        "mc_values": mc,
        "n_correct": [round(v * 4) for v in mc],
        "n_rollouts": [4] * len(mc),
        "first_error_index": next((i for i, label in enumerate(labels) if not label), -1),
        "outcome_correct": labels[-1],
        "meta": json.dumps({"solution_index": 3}),
    }
    row.update(columns)
    return row


def test_compress_merges_every_pair_at_probability_one() -> None:
    row = _path(
        [True, True, False, False],
        [0.75, 0.5, 0.0, 0.0],
        judge_labels=[True, True, False, None],
        judge_reasons=["ok", "ok", "bad", ""],
    )
    (merged,) = compress(row, 1.0, seed=0)
    assert merged["completions"] == ["s0\n\ns1", "s2\n\ns3"]
    assert merged["labels"] == [True, False]
    assert merged["mc_values"] == [0.5, 0.0]  # the child's (later step's) MC
    assert merged["n_correct"] == [2, 0] and merged["n_rollouts"] == [4, 4]
    assert merged["first_error_index"] == 1
    assert merged["judge_labels"] == [True, False]
    assert merged["judge_reasons"] == ["ok; ok", "bad"]
    assert merged["id"] == "row-1/hnc" and merged["source"] == "gsm8k"
    assert json.loads(merged["meta"]) == {
        "solution_index": 3,
        "merged": [[0, 1], [2, 3]],
        "derived_from": "row-1",
        "augmenter": "hnc",
    }
    assert row["completions"] == ["s0", "s1", "s2", "s3"]  # the original is untouched


def test_compress_hard_label_is_the_and() -> None:
    row = _path(
        [True, False, True, True, True], [0.5, 0.25, 0.5, 0.75, 1.0], judge_labels=[True, None, None, True, True]
    )
    (merged,) = compress(row, 1.0, seed=0, joiner=" ")
    assert merged["completions"] == ["s0 s1", "s2 s3", "s4"]
    assert merged["labels"] == [False, True, True]
    assert merged["first_error_index"] == 0
    assert merged["mc_values"] == [0.25, 0.75, 1.0]
    assert merged["judge_labels"] == [None, None, True]
    assert and_labels([True, None, False]) is False and and_labels([True, None]) is None and and_labels([]) is True


def test_compress_nothing_to_merge() -> None:
    assert compress(_path([True, False], [0.5, 0.0]), 0.0, seed=1) == []
    assert compress(_path([True], [1.0]), 1.0, seed=1) == []
    with pytest.raises(ValueError, match="probability"):
        compress(_path([True, True], [1.0, 1.0]), 1.5, seed=1)


def test_compress_is_deterministic_and_near_its_probability() -> None:
    rows = [_path([True, True], [1.0, 1.0], row_id=f"r{i}") for i in range(2000)]
    first = [bool(compress(row, 0.5, seed=7)) for row in rows]
    again = [bool(compress(row, 0.5, seed=7)) for row in rows]
    other = [bool(compress(row, 0.5, seed=8)) for row in rows]
    assert first == again
    assert first != other
    assert 0.45 < sum(first) / len(first) < 0.55
    assert merge_pairs(6, 0.5, 7, "r0") == merge_pairs(6, 0.5, 7, "r0")
    for pairs in (merge_pairs(9, 0.5, seed, "x") for seed in range(50)):
        flat = [i for pair in pairs for i in pair]
        assert flat == sorted(set(flat))  # pairs never overlap


# --- progress (docs/labellers.md §5, §6.1) ---


def test_pav_value_and_advantages() -> None:
    assert pav_value(0.5, 2) == 0.75
    assert pav_value(0.25, 2) == 0.4375
    assert pav_value(None, 4) is None
    assert pav_value(1.0, 4) == 1.0 and pav_value(0.0, 4) == 0.0
    # V_2: root 0.75, steps 0.75, 0.4375, 1.0 (final step = answer correct)
    assert pav_advantages([0.5, 0.25, 1.0], root_mc=0.5, k=2) == [0.0, -0.3125, 0.5625]
    assert pav_advantages([0.5, 0.25, 0.0], root_mc=0.5, k=1) == [0.0, -0.25, -0.25]
    assert pav_advantages([0.5, None, 1.0], root_mc=0.5, k=2) == [0.0, None, None]
    assert pav_advantages([0.5], root_mc=None, k=2) == [None]
    assert pav_advantages([], root_mc=0.5, k=2) == []
    with pytest.raises(ValueError, match="K must"):
        pav_value(0.5, 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pav_advantages([1.5], root_mc=0.5, k=2)


def test_rpe_labels() -> None:
    mc = [0.4, 0.5, 0.0, 0.0, 0.25, None, 1.0]
    # ratios: 0.4/0.5 = 0.8, 0.5/0.4 = 1.25, 0/0.5 = 0, 0 after 0, 0.25 after 0, unmeasured, after unmeasured
    assert rpe_labels(mc, root_mc=0.5) == [True, True, False, False, True, None, None]
    assert rpe_labels([0.6], root_mc=0.75) == [True]  # 0.6/0.75 is 0.7999999999999999 in floats
    assert rpe_labels([0.5, 0.375], root_mc=0.5, epsilon=1.0) == [True, False]
    assert rpe_labels([0.5], root_mc=None) == [None]
    assert rpe_labels([0.0], root_mc=0.0) == [False]
    with pytest.raises(ValueError, match="epsilon"):
        rpe_labels([0.5], root_mc=0.5, epsilon=0.0)


# --- balance ---


def _labelled(row_id: str, labels: list[bool]) -> dict[str, Any]:
    return {"id": row_id, "labels": labels, "completions": ["x"] * len(labels)}


def test_balance_drops_all_positive_rows_down_to_the_target() -> None:
    rows = [
        _labelled("a", [True, True]),
        _labelled("b", [True, True]),
        _labelled("c", [True, True]),
        _labelled("d", [True, False]),
        _labelled("e", [False, False]),
    ]
    assert positive_ratio(rows) == 0.7
    kept, dropped = balance(rows, 0.5, seed=3)
    assert positive_ratio(kept) == 0.5  # 7/10 -> 5/8 -> 3/6
    assert len(dropped) == 2
    assert {r["id"] for r in dropped} <= {"a", "b", "c"}
    assert all(r["drop_reason"].startswith("balance: excess positives") for r in dropped)
    assert [r["id"] for r in kept] == [r["id"] for r in rows if r["id"] not in {d["id"] for d in dropped}]
    assert balance(rows, 0.5, seed=3) == (kept, dropped)
    assert "drop_reason" not in rows[0]


def test_balance_overshoots_by_at_most_one_row() -> None:
    rows = [_labelled("big", [True] * 6), _labelled("neg", [True, False, False, False])]
    kept, dropped = balance(rows, 0.5, seed=0)  # 7/10 -> 1/4: the only lever overshoots
    assert [r["id"] for r in dropped] == ["big"] and positive_ratio(kept) == 0.25


def test_balance_drops_negative_heavy_rows_when_negatives_are_in_excess() -> None:
    rows = [
        _labelled("a", [True, True]),
        _labelled("b", [False, False]),
        _labelled("c", [True, False]),
        _labelled("d", [False, False, False, True]),
    ]
    assert positive_ratio(rows) == 0.4
    kept, dropped = balance(rows, 0.5, seed=0)
    assert len(dropped) == 1 and dropped[0]["id"] in {"b", "d"}  # "c" (0.5) would not raise the ratio
    assert positive_ratio(kept) == 0.5
    assert dropped[0]["drop_reason"].startswith("balance: excess negatives")


def test_balance_edge_cases() -> None:
    only_positive = [_labelled("a", [True]), _labelled("b", [True, True])]
    assert balance(only_positive, 0.5, seed=0) == (only_positive, [])  # no negatives to balance against
    balanced = [_labelled("a", [True]), _labelled("b", [False])]
    assert balance(balanced, 0.5, seed=0) == (balanced, [])
    assert balance([], 0.5, seed=0) == ([], [])
    with pytest.raises(ValueError, match="target_positive_ratio"):
        balance(balanced, 1.0, seed=0)
    assert row_key({"id": "x"}) == "x"
    assert row_key({"prompt": "q", "completions": ["a"]}) == row_key({"prompt": "q", "completions": ["a"]})
