"""Consensus filtering: first errors from rows, the all/majority rules, verifier vetoes and the retention report."""

from __future__ import annotations

import json
from typing import Any

import pytest

from annotators.consensus import (
    ConsensusConfig,
    consensus,
    first_errors,
    retention_by_annotator,
    retention_by_source,
    update_meta,
    verifier_flags,
)
from annotators.filters import filter_rows


def _row(row_id: str, first_error: int, source: str = "gsm8k", **columns: Any) -> dict[str, Any]:
    labels = [True] * 4 if first_error == -1 else [i != first_error for i in range(4)]
    row = {
        "id": row_id,
        "source": source,
        "completions": ["s0", "s1", "s2", "s3"],
        "labels": labels,
        "first_error_index": first_error,
        "meta": json.dumps({"solution_index": 0}),
    }
    row.update(columns)
    return row


def test_first_errors_reads_mc_and_label_columns() -> None:
    row = _row(
        "r",
        2,
        judge_labels=[True, True, False, None],
        prm_labels=[True, True, True, True],
        arithmetic_labels=[None, False, None, None],
    )
    assert first_errors(row) == {"mc": 2, "arithmetic": None, "judge": 2, "prm": -1}
    assert first_errors(row, ["mc", "judge", "absent"]) == {"mc": 2, "judge": 2, "absent": None}
    assert first_errors({"first_error_index": None, "judge_labels": [None, None]}) == {"mc": None, "judge": None}


def test_verifier_flags_skip_unchecked_steps() -> None:
    row = _row("r", -1, arithmetic_labels=[None, True, False, False])
    assert verifier_flags(row, ["arithmetic", "z3"]) == {"arithmetic": 2, "z3": -1}


def test_rule_all() -> None:
    config = ConsensusConfig(annotators=("mc", "judge"))
    assert consensus({"mc": 2, "judge": 2}, {}, config) == (True, "agree: mc=2, judge=2", 2)
    assert consensus({"mc": -1, "judge": -1}, {}, config)[0:3:2] == (True, -1)
    assert consensus({"mc": 1, "judge": 2}, {}, config) == (False, "disagree: mc=1, judge=2", None)
    assert consensus({"mc": 1, "judge": None}, {}, config) == (False, "missing verdict: judge", None)
    assert consensus({"mc": 1}, {}, config) == (False, "missing verdict: judge", None)


def test_rule_majority() -> None:
    config = ConsensusConfig(annotators=("mc", "judge", "prm"), rule="majority")
    keep, reason, first_error = consensus({"mc": 1, "judge": 1, "prm": 3}, {}, config)
    assert (keep, first_error) == (True, 1) and reason.startswith("majority:")
    assert consensus({"mc": 1, "judge": None, "prm": 1}, {}, config)[0:3:2] == (True, 1)
    keep, reason, first_error = consensus({"mc": 1, "judge": None, "prm": 2}, {}, config)
    assert (keep, first_error) == (False, None)
    assert reason == "no majority: mc=1, judge=None, prm=2 (missing: judge)"
    two = ConsensusConfig(annotators=("mc", "judge"), rule="majority")
    assert consensus({"mc": 1, "judge": 2}, {}, two)[0] is False  # 1 of 2 is no strict majority


def test_veto() -> None:
    config = ConsensusConfig(annotators=("mc", "judge"), veto=("arithmetic",))
    assert consensus({"mc": 2, "judge": 2}, {"arithmetic": 0}, config) == (
        False,
        "veto: arithmetic flags step 0 before consensus first error 2",
        2,
    )
    assert consensus({"mc": -1, "judge": -1}, {"arithmetic": 3}, config)[0] is False
    assert consensus({"mc": 2, "judge": 2}, {"arithmetic": 2}, config)[0] is True  # flags the agreed step
    assert consensus({"mc": 2, "judge": 2}, {"arithmetic": 3}, config)[0] is True  # a masked step
    assert consensus({"mc": 2, "judge": 2}, {"arithmetic": -1}, config)[0] is True
    assert consensus({"mc": 2, "judge": 2}, {}, config)[0] is True  # verifier not run: no veto


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="rule"):
        ConsensusConfig(rule="any")
    with pytest.raises(ValueError, match="duplicate"):
        ConsensusConfig(annotators=("mc", "mc"))
    with pytest.raises(ValueError, match="at least one"):
        ConsensusConfig(annotators=())
    assert ConsensusConfig(annotators=["mc", "judge"]).annotators == ("mc", "judge")  # type: ignore[arg-type]


def _rows() -> list[dict[str, Any]]:
    return [
        _row("agree", 1, judge_labels=[True, False, None, None]),
        _row("agree-none", -1, judge_labels=[True] * 4),
        _row("disagree", 1, judge_labels=[True, True, False, None]),
        _row("missing", 0, judge_labels=[None] * 4),
        _row("no-column", 0, source="math"),
        _row("vetoed", 2, source="math", judge_labels=[True, True, False, None], arithmetic_labels=[False] * 4),
    ]


def test_filter_rows_keeps_agreement_and_explains_drops() -> None:
    config = ConsensusConfig(annotators=("mc", "judge"), veto=("arithmetic",))
    rows = _rows()
    kept, dropped = filter_rows(rows, config)
    assert [r["id"] for r in kept] == ["agree", "agree-none"]
    assert {r["id"]: r["drop_reason"] for r in dropped} == {
        "disagree": "consensus: disagree: mc=1, judge=2",
        "missing": "consensus: missing verdict: judge",
        "no-column": "consensus: missing verdict: judge",
        "vetoed": "consensus: veto: arithmetic flags step 0 before consensus first error 2",
    }
    meta = json.loads(kept[0]["meta"])
    assert meta == {
        "solution_index": 0,
        "consensus": {"first_error": 1, "rule": "all", "reason": "agree: mc=1, judge=1"},
    }
    assert "drop_reason" not in kept[0]
    assert rows[0]["meta"] == json.dumps({"solution_index": 0})  # inputs untouched


def test_filter_rows_majority_drops_rows_whose_labels_are_outvoted() -> None:
    config = ConsensusConfig(annotators=("mc", "judge", "prm"), rule="majority")
    row = _row("outvoted", 0, judge_labels=[True, False, None, None], prm_labels=[True, False, None, None])
    kept, dropped = filter_rows([row], config)
    assert kept == []
    assert dropped[0]["drop_reason"] == ("consensus: labels disagree with consensus: first_error_index=0, consensus=1")


def test_retention_by_source() -> None:
    kept, dropped = filter_rows(_rows(), ConsensusConfig(veto=("arithmetic",)))
    report = retention_by_source(kept, dropped)
    assert report["sources"]["gsm8k"] == {
        "kept": 2,
        "dropped": 2,
        "total": 4,
        "retention": 0.5,
        "drop_reasons": {"consensus: disagree": 1, "consensus: missing verdict": 1},
    }
    assert report["sources"]["math"]["retention"] == 0.0
    assert report["sources"]["math"]["drop_reasons"] == {"consensus: missing verdict": 1, "consensus: veto": 1}
    assert report["overall"]["kept"] == 2 and report["overall"]["total"] == 6
    assert report["overall"]["retention"] == pytest.approx(1 / 3)
    assert retention_by_source([], [])["overall"] == {
        "kept": 0,
        "dropped": 0,
        "total": 0,
        "retention": 0.0,
        "drop_reasons": {},
    }


def test_update_meta_keeps_the_meta_type() -> None:
    assert update_meta({"meta": {"a": 1}}, {"b": 2})["meta"] == {"a": 1, "b": 2}
    assert json.loads(update_meta({"meta": '{"a": 1}'}, {"b": 2})["meta"]) == {"a": 1, "b": 2}
    assert json.loads(update_meta({"meta": "not json"}, {"b": 2})["meta"]) == {"unparsed_meta": "not json", "b": 2}
    assert update_meta({}, {"b": 2})["meta"] == {"b": 2}


def test_a_verifier_votes_and_abstains_on_steps_it_cannot_check() -> None:
    row = _row("r", 2, arithmetic_labels=[True, None, False, None])
    assert first_errors(row, ["mc", "arithmetic"]) == {"mc": 2, "arithmetic": None}  # judge semantics: undetermined
    assert first_errors(row, ["mc", "arithmetic"], ["arithmetic"]) == {"mc": 2, "arithmetic": 2}
    clean = _row("c", -1, arithmetic_labels=[None, True, None, True])
    assert first_errors(clean, ["arithmetic"], ["arithmetic"]) == {"arithmetic": -1}  # checked steps all hold
    unchecked = _row("u", -1, arithmetic_labels=[None] * 4)
    assert first_errors(unchecked, ["arithmetic"], ["arithmetic"]) == {"arithmetic": None}  # nothing checked


def _verifier_rows() -> list[dict[str, Any]]:
    return [
        _row("agree-error", 2, arithmetic_labels=[True, None, False, None]),
        _row("agree-clean", -1, arithmetic_labels=[None, True, None, True]),
        _row("unchecked", -1, source="math", arithmetic_labels=[None] * 4),
        _row("earlier-flag", 2, source="math", arithmetic_labels=[False, None, None, None]),
        _row("holds-at-mc-error", 1, arithmetic_labels=[True, True, None, None]),
    ]


def test_filter_rows_with_mc_and_a_voting_verifier() -> None:
    config = ConsensusConfig(annotators=("mc", "arithmetic"), abstaining=("arithmetic",))
    kept, dropped = filter_rows(_verifier_rows(), config)
    assert [r["id"] for r in kept] == ["agree-error", "agree-clean"]
    assert {r["id"]: r["drop_reason"] for r in dropped} == {
        "unchecked": "consensus: missing verdict: arithmetic",
        "earlier-flag": "consensus: disagree: mc=2, arithmetic=0",
        "holds-at-mc-error": "consensus: disagree: mc=1, arithmetic=-1",
    }
    # Without abstention every unchecked step before the first flag vetoes the row: only all-checked rows survive.
    strict_kept, _ = filter_rows(_verifier_rows(), ConsensusConfig(annotators=("mc", "arithmetic")))
    assert strict_kept == []


def test_retention_by_annotator_names_the_annotator_that_keeps_nothing() -> None:
    rows = [{**row, "judge_labels": [None] * 4} for row in _verifier_rows()]
    rows[0]["judge_labels"] = [True, False, None, None]
    config = ConsensusConfig(annotators=("mc", "arithmetic", "judge"), rule="majority", abstaining=("arithmetic",))
    assert retention_by_annotator(rows, config) == {
        "arithmetic": {"agree": 2, "disagree": 2, "abstain": 1, "total": 5, "retention": 0.4},
        "judge": {"agree": 0, "disagree": 1, "abstain": 4, "total": 5, "retention": 0.0},
    }
    assert retention_by_annotator([], config)["judge"]["retention"] is None
