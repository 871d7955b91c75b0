"""`run.py evaluate`: ProcessBench, PRM800K phase 1 and exact arithmetic truth, on hand-made and shared data."""

import json
import math
from pathlib import Path

import pytest

from annotators.evaluation import prm800k_pairs
from annotators.exact import exact_quality
from commands.evaluate import evaluate_prm800k, evaluate_processbench
from schemas.config import config_from_dict

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIG = config_from_dict({"input": {"path": "-"}, "policy": {"model": "m"}, "annotators": {"arithmetic": {}}})


def test_processbench_scores_a_verifier_exactly(tmp_path):
    rows = [
        {"id": "a", "problem": "p", "steps": ["2+2=4.", "4*3=13."], "label": 1},  # flagged at 1: right
        {"id": "b", "problem": "p", "steps": ["We add.", "5+5=11."], "label": 0},  # flagged at 1: wrong index
        {"id": "c", "problem": "p", "steps": ["3*3=9.", "So 9."], "label": -1},  # no flag: right
        {"id": "d", "problem": "p", "steps": ["7-2=4."], "label": -1},  # flagged on a correct one: wrong
    ]
    path = tmp_path / "pb.json"
    path.write_text(json.dumps(rows))
    report = evaluate_processbench(CONFIG, path)
    scores = report["annotators"]["arithmetic"]
    assert (scores["acc_err"], scores["acc_cor"], scores["n_err"], scores["n_cor"]) == (0.5, 0.5, 2, 2)
    assert scores["f1"] == 0.5
    assert report["baseline_all_correct"]["acc_err"] == 0.0 and report["baseline_all_correct"]["f1"] == 0.0


def test_prm800k_pairs_and_neutral_rules(tmp_path):
    record = {
        "question": {"problem": "What is 2*3?"},
        "label": {
            "steps": [
                {
                    "completions": [{"text": "2*3=6.", "rating": 1}, {"text": "2*3=7.", "rating": -1}],
                    "chosen_completion": 0,
                },
                {"completions": [{"text": "So it is 6.", "rating": 0}], "chosen_completion": 0},
                {
                    "completions": [{"text": "6+1=8.", "rating": -1}],
                    "chosen_completion": None,
                    "human_completion": None,
                },
            ]
        },
    }
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(record) + "\n")
    pairs = list(prm800k_pairs(path))
    assert [(len(prev), step, r) for _, prev, step, r in pairs] == [
        (0, "2*3=6.", 1),
        (0, "2*3=7.", -1),
        (1, "So it is 6.", 0),
        (2, "6+1=8.", -1),
    ]
    excluded = evaluate_prm800k(CONFIG, path)
    assert excluded["scored"] == 3 and excluded["positives"] == 1
    a = excluded["annotators"]["arithmetic"]
    assert a["flags"] == 2 and a["flag_precision"] == 1.0 and a["auroc"] == 1.0
    assert evaluate_prm800k(CONFIG, path, neutral="positive")["positives"] == 2
    assert evaluate_prm800k(CONFIG, path, neutral="negative")["positives"] == 1


def test_exact_quality_per_annotator():
    rows = [
        {
            "prompt": "Q: 2+3*4=?",
            "completions": ["Step 1: 3*4=12", "Step 2: 2+12=15 Answer: 15"],
            "labels": [True, False],
            "judge_labels": [False, None],
            "rpe_labels": [True, True],
        },
        {
            "prompt": "Q: 5+5=?",
            "completions": ["Step 1: 5+5=10 Answer: 10"],
            "labels": [True],
            "judge_labels": [True],
            "rpe_labels": [True],
        },
    ]
    out = exact_quality(rows)
    assert out["mc"]["first_error_agreement"] == 1.0 and out["mc"]["step_accuracy"] == 1.0
    assert out["judge"]["first_error_agreement"] == 0.5 and out["judge"]["steps_scored"] == 2
    assert "rpe" not in out


@pytest.mark.skipif(not (SHARED / "processbench" / "gsm8k.json").exists(), reason="../shared/data is absent")
def test_processbench_gsm8k_with_the_arithmetic_verifier():
    report = evaluate_processbench(CONFIG, SHARED / "processbench" / "gsm8k.json")
    scores = report["annotators"]["arithmetic"]
    assert report["n"] == 400 and scores["n_err"] == 207 and scores["n_cor"] == 193
    assert scores["acc_cor"] >= 0.95 and scores["acc_err"] >= 0.05  # measured: 1.0 and 0.106
    assert not math.isnan(scores["f1"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--benchmark", "exact", "--run", "{missing}"], "--run {missing}: no such run folder"),
        (["evaluate", "--benchmark", "exact", "--run", "{empty}"], "--run {empty}: no manifest.json there"),
        (["verify", "{missing}", "--output", "{out}"], "verify {missing}: no such run folder"),
        (["annotate", "--from", "{missing}", "--config", "configs/demo.yaml"], "--from {missing}: no such run folder"),
        (["report", "{missing}"], "{missing}/manifest.json: no manifest"),
        (["export", "{missing}", "--format", "trl"], "no data shards at {missing}/data"),
        (["publish", "{missing}", "--repo", "org/name", "--dry-run"], "{missing}: no manifest.json"),
    ],
)
def test_commands_refuse_a_missing_run_folder_by_name(argv, message, tmp_path, capsys):
    import run

    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "nothing", "empty": tmp_path / "empty", "out": tmp_path / "out"}
    argv = [a.format(**paths) for a in argv]
    argv = [str(Path(__file__).resolve().parents[1] / a) if a.startswith("configs/") else a for a in argv]
    assert run.main(argv) == 2
    captured = capsys.readouterr()
    assert message.format(**paths) in captured.out + captured.err
    assert not (tmp_path / "out").exists(), "nothing is written for a run that is not there"
