"""ProcessBench's metric, the loader, first-error conversions and the generic step metrics."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from annotators.evaluation import (
    auroc,
    first_error_from_labels,
    labels_from_first_error,
    load_processbench,
    processbench_scores,
    step_accuracy,
)

PROCESSBENCH_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "processbench" / "gsm8k.json"


def test_processbench_scores_known_f1() -> None:
    scores = processbench_scores([1, None, -1, -1], [1, 2, -1, -1])
    assert scores == {"acc_err": 0.5, "acc_cor": 1.0, "f1": pytest.approx(2 / 3), "n_err": 2, "n_cor": 2}


def test_processbench_scores_match_semantics() -> None:
    # A wrong index on an all-correct solution and -1 on an erroneous one both miss.
    scores = processbench_scores([2, -1, 0, -1, 5], [-1, 0, 0, -1, 3])
    assert scores["acc_err"] == pytest.approx(1 / 3)
    assert scores["acc_cor"] == 0.5
    assert scores["f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    assert processbench_scores([-1, 0], [0, -1])["f1"] == 0.0  # both accuracies 0 would be 0/0
    only_err = processbench_scores([0], [0])
    assert only_err["acc_err"] == 1.0 and math.isnan(only_err["acc_cor"]) and math.isnan(only_err["f1"])
    with pytest.raises(ValueError, match="predictions"):
        processbench_scores([0], [0, 1])


def test_first_error_conversions() -> None:
    assert first_error_from_labels([True, True, False, True]) == 2
    assert first_error_from_labels([True, True]) == -1
    assert first_error_from_labels([]) == -1
    assert first_error_from_labels([True, None, False]) is None
    assert first_error_from_labels([True, False, None]) == 1
    assert labels_from_first_error(1, 3) == [True, False, None]
    assert labels_from_first_error(-1, 2) == [True, True]
    assert labels_from_first_error(None, 2) == [None, None]
    with pytest.raises(ValueError, match="out of range"):
        labels_from_first_error(3, 3)
    for k in (-1, 0, 1, 4):
        assert first_error_from_labels(labels_from_first_error(k, 5)) == k


def test_step_accuracy() -> None:
    assert step_accuracy([True, False, True, None], [True, True, True, False]) == 0.5
    assert step_accuracy([True, False], [None, False]) == 1.0
    assert math.isnan(step_accuracy([True], [None]))


def test_auroc_known_cases() -> None:
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auroc([0.5, 0.5, 0.5], [True, False, True]) == 0.5
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert auroc([0.5, 0.5, 0.2, 0.9], [True, False, False, True]) == 0.875  # the tie counts one half
    assert auroc([0.3, None, 0.7], [False, True, None]) != auroc([0.3, 0.1, 0.7], [False, True, True])
    assert math.isnan(auroc([0.1, 0.2], [True, True]))


def test_auroc_matches_the_pairwise_definition() -> None:
    rng = random.Random(0)
    scores = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for _ in range(200)]
    truths = [rng.random() < 0.4 for _ in range(200)]
    positives = [s for s, t in zip(scores, truths, strict=True) if t]
    negatives = [s for s, t in zip(scores, truths, strict=True) if not t]
    pairwise = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives) / (len(positives) * len(negatives))
    assert auroc(scores, truths) == pytest.approx(pairwise)


def test_load_processbench_validates(tmp_path: Path) -> None:
    good = [{"id": "x-0", "problem": "Q", "steps": ["a", "b"], "label": 1}]
    path = tmp_path / "split.json"
    path.write_text(json.dumps(good))
    assert load_processbench(path) == good
    lines = tmp_path / "split.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in good) + "\n")
    assert load_processbench(lines) == good
    path.write_text(json.dumps([{"id": "x-1", "problem": "Q", "steps": ["a"], "label": 1}]))
    with pytest.raises(ValueError, match="x-1"):
        load_processbench(path)
    path.write_text(json.dumps([{"id": "x-2", "steps": []}]))
    with pytest.raises(ValueError, match="lacks"):
        load_processbench(path)


@pytest.mark.skipif(not PROCESSBENCH_GSM8K.exists(), reason="shared ProcessBench data not present")
def test_processbench_gsm8k_split() -> None:
    rows = load_processbench(PROCESSBENCH_GSM8K)
    labels = [row["label"] for row in rows]
    assert len(rows) == 400
    oracle = processbench_scores(labels, labels)
    assert oracle == {"acc_err": 1.0, "acc_cor": 1.0, "f1": 1.0, "n_err": 207, "n_cor": 193}
    always_correct = processbench_scores([-1] * len(rows), labels)
    assert (always_correct["acc_err"], always_correct["acc_cor"], always_correct["f1"]) == (0.0, 1.0, 0.0)
