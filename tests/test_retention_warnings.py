"""A filter that drops most of a run is a warning: `pipelines.manifest.retention_warnings` on hand-made counts."""

from __future__ import annotations

from pipelines.manifest import retention_warnings


def _counts(kept: int, by_filter: dict[str, int], **extra) -> dict:
    dropped = sum(by_filter.values())
    return {
        "filter_drops": {
            "rows": kept + dropped,
            "kept": kept,
            "by_filter": by_filter,
            "by_source": {"arithmetic": {"kept": kept, "dropped": dropped, "retention": None}},
        },
        **extra,
    }


def test_the_issue_run_warns_with_retention_by_source_and_annotator() -> None:
    annotators = {"judge": {"agree": 0, "disagree": 1000, "abstain": 0, "total": 1000, "retention": 0.0}}
    warnings = retention_warnings(_counts(0, {"consensus": 1000}, retention_by_annotator=annotators))
    assert warnings == [
        "filter consensus dropped 1000 of 1000 rows (100.0%); kept 0; kept by source: arithmetic 0/1000; "
        "agreement with MC by annotator: judge 0/1000 (1000 disagree, 0 no verdict)"
    ]


def test_no_warning_at_or_below_the_share() -> None:
    assert retention_warnings(_counts(10, {"consensus": 90})) == []  # exactly 90% dropped: not more than 90%
    assert retention_warnings(_counts(9, {"consensus": 91}))[0].startswith("filter consensus dropped 91 of 100")
    assert retention_warnings(_counts(50, {"consensus": 50}), share=0.4) != []
    assert retention_warnings({}) == [] and retention_warnings(_counts(0, {})) == []  # nothing reached a filter


def test_filters_together_warn_when_none_alone_does() -> None:
    warnings = retention_warnings(_counts(5, {"balance": 40, "consensus": 55}))
    assert warnings == [
        "filter balance + consensus dropped 95 of 100 rows (95.0%); kept 5; kept by source: arithmetic 5/100"
    ]


def test_labels_almost_all_negative_warn_with_the_counts() -> None:
    # The SmolLM2-135M-Instruct run on GSM8K (issue 18): 3 of 153 labelled steps positive.
    counts = {**_counts(16, {}), "steps": 153, "steps_positive": 3, "steps_negative": 150}
    assert retention_warnings(counts) == [
        "only 3 of 153 labelled steps are positive (2.0%, under 5%): the policy rarely reaches the gold answer, so the "
        "labels say little; check the verdict reasons in evidence/solutions, or use a stronger policy or more samples "
        "per step"
    ]


def test_no_positive_share_warning_at_or_above_five_percent_or_without_steps() -> None:
    assert retention_warnings({"steps": 100, "steps_positive": 5}) == []  # exactly 5%: not fewer
    assert retention_warnings({"steps": 100, "steps_positive": 4})[0].startswith("only 4 of 100 labelled steps")
    assert retention_warnings({"steps": 0, "steps_positive": 0}) == []


def test_a_filter_warning_comes_before_the_positive_share_warning() -> None:
    counts = {**_counts(9, {"consensus": 91}), "steps": 40, "steps_positive": 0}
    warnings = retention_warnings(counts)
    assert [line.split(" ", 2)[:2] for line in warnings] == [["filter", "consensus"], ["only", "0"]]
