"""`run.py evaluate --prm`: first-error F1 and best-of-N picks with a scripted scorer whose scores are known."""

import json
import math
from pathlib import Path

import pytest

from commands import evaluate_prm, report
from prm.bestofn import (
    best_of_n,
    first_error_from_scores,
    group_correctness,
    pick_by_score,
    problem_accuracy,
    step_level_scores,
    within_problem_auroc,
)
from schemas.config import load_config
from tests.test_report import make_fake_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ScriptedScorer:
    """A PRM stand-in: fixed step scores per (question, steps), looked up by the steps alone."""

    def __init__(self, name: str, scores: dict[tuple[str, ...], list[float]]) -> None:
        self.name = name
        self.scores = scores
        self.calls = 0

    def score_batch(self, items, batch_size: int = 32):
        self.calls += 1
        return [list(self.scores[tuple(steps)]) for _, steps in items]


# ---------------------------------------------------------------- step level


@pytest.mark.parametrize(
    ("scores", "threshold", "expected"),
    [
        ([0.9, 0.4, 0.2], 0.5, 1),
        ([0.9, 0.6], 0.5, -1),
        ([math.nan, 0.3], 0.5, 1),  # a NaN step is skipped, not an error
        ([0.9, None, 0.8], 0.5, -1),
        ([0.9, 0.6], 0.7, 1),
        ([], 0.5, -1),
    ],
)
def test_first_error_from_scores(scores, threshold, expected):
    assert first_error_from_scores(scores, threshold) == expected


def test_processbench_f1_of_a_scripted_prm(tmp_path):
    rows = [
        {"id": "a", "problem": "p", "steps": ["a1", "a2"], "label": 1},  # predicted 1: right
        {"id": "b", "problem": "p", "steps": ["b1", "b2"], "label": 0},  # predicted 1: wrong index
        {"id": "c", "problem": "p", "steps": ["c1", "c2"], "label": -1},  # predicted -1: right
        {"id": "d", "problem": "p", "steps": ["d1"], "label": -1},  # predicted 0: wrong
        {"id": "e", "problem": "p", "steps": ["e1", "e2", "e3"], "label": 2},  # predicted 2: right
    ]
    scorer = ScriptedScorer(
        "scripted",
        {
            ("a1", "a2"): [0.9, 0.2],
            ("b1", "b2"): [0.8, 0.3],
            ("c1", "c2"): [0.7, 0.6],
            ("d1",): [0.4],
            ("e1", "e2", "e3"): [0.9, 0.9, 0.1],
        },
    )
    path = tmp_path / "pb.json"
    path.write_text(json.dumps(rows))
    result = evaluate_prm.prm_processbench([scorer], path, threshold=0.5)
    scores = result["annotators"]["scripted"]
    assert (scores["n_err"], scores["n_cor"]) == (3, 2)
    assert scores["acc_err"] == round(2 / 3, 4) and scores["acc_cor"] == 0.5
    assert scores["f1"] == round(4 / 7, 4)
    # steps after a first error are unknown; 15 of 18 (right, wrong) pairs are ranked right
    assert scores["step_auroc"] == round(15 / 18, 4)
    assert result["baseline_all_correct"]["f1"] == 0.0


def test_step_level_scores_refuse_mismatched_lengths():
    with pytest.raises(ValueError, match="2 score lists for 1 first errors"):
        step_level_scores([[0.1], [0.2]], [0])


# ---------------------------------------------------------------- best-of-N picks


def _sample(answer, correct, prm=None, orm=None):
    scores = prm or []
    return {
        "answer": answer,
        "correct": correct,
        "prm_min": min(scores) if scores else None,
        "prm_last": scores[-1] if scores else None,
        "orm": orm,
    }


GROUP = [
    _sample("1", False, [0.9, 0.2], orm=0.5),
    _sample("2", True, [0.6, 0.7], orm=0.5),  # highest min: prm_min picks it
    _sample("1", False, [0.5, 0.95], orm=0.1),  # highest last: prm_last picks it
    _sample("3", False, [0.1, 0.3], orm=0.2),
]


def test_prm_min_and_prm_last_pick_different_samples():
    assert pick_by_score(GROUP, "prm_min") == 1
    assert pick_by_score(GROUP, "prm_last") == 2
    assert pick_by_score(GROUP, "orm") == 0  # a tie goes to the lowest index
    expected = {"prm_min": 1.0, "prm_last": 0.0, "orm": 0.0, "majority": 0.0, "random": 0.25, "oracle": 1.0}
    assert {m: group_correctness(GROUP, m) for m in expected} == expected


def test_within_problem_auroc_ignores_what_only_separates_problems():
    easy = [_sample("1", True, [0.8]), _sample("2", False, [0.9])]  # ranked backwards within the problem
    hard = [_sample("1", True, [0.2]), _sample("2", False, [0.1])]  # ranked right within the problem
    solved = [_sample("1", True, [0.5]), _sample("1", True, [0.4])]  # no wrong sample: no pair, left out
    assert within_problem_auroc([easy, hard, solved]) == {"mean": 0.5, "problems": 2}
    assert within_problem_auroc([hard]) == {"mean": 1.0, "problems": 1}


def test_unscored_samples_rank_last():
    group = [_sample("1", False), _sample("2", True, [0.01])]
    assert pick_by_score(group, "prm_min") == 1
    assert pick_by_score([_sample("1", False), _sample("2", True)], "prm_min") == 0


def test_majority_ties_count_as_expected_correctness():
    tied = [_sample("1", False), _sample("2", True), _sample("1", False), _sample("2", True)]
    assert group_correctness(tied, "majority") == 0.5
    three_way = [_sample("1", False), _sample("2", True), _sample("3", False), _sample(None, False)]
    assert group_correctness(three_way, "majority") == pytest.approx(1 / 3)
    nones = [_sample(None, False), _sample(None, False), _sample("2", True)]
    assert group_correctness(nones, "majority") == 1.0  # missing answers do not vote
    assert group_correctness([_sample(None, True)], "majority") == 0.0


def test_problem_accuracy_averages_disjoint_groups():
    samples = GROUP + [_sample("2", True, [0.1]), _sample("2", True, [0.2]), _sample("5", False, [0.9]), GROUP[3]]
    assert problem_accuracy(samples, "prm_min", 4) == 0.5  # group 1 right, group 2 picks the 0.9 wrong one
    assert problem_accuracy(samples, "majority", 4) == 0.5
    assert problem_accuracy(samples, "random", 4) == pytest.approx((0.25 + 0.5) / 2)
    assert problem_accuracy(samples, "oracle", 8) == 1.0
    with pytest.raises(ValueError, match="best-of-16 needs at least 16 samples"):
        problem_accuracy(samples, "prm_min", 16)


def _problems(pattern: list[tuple[bool, bool]]) -> list[list[dict]]:
    """Problems of 4 samples: 3 vote for one answer (right when `majority_right`), the PRM favours a `prm_right` one."""
    out = []
    for prm_right, majority_right in pattern:
        voted, other = (("7", True), ("8", False)) if majority_right else (("8", False), ("7", True))
        favourite = 0 if prm_right == majority_right else 3
        samples = [_sample(*voted), _sample(*voted), _sample(*voted), _sample(*other)]
        for index, sample in enumerate(samples):
            sample["prm_min"] = 0.9 if index == favourite else 0.1
        out.append(samples)
    return out


def test_bootstrap_is_seeded_and_beats_majority_needs_the_interval_above_zero():
    always_better = _problems([(True, False)] * 10)
    table = best_of_n(always_better, ns=(4,), seed=1)["4"]
    assert table["prm_min"]["mean"] == 1.0 and table["majority"]["mean"] == 0.0
    assert table["prm_min"]["vs_majority"] == {"mean": 1.0, "low": 1.0, "high": 1.0}
    assert table["prm_min"]["beats_majority"] is True
    assert "vs_majority" not in table["majority"]
    assert "orm" not in table  # no sample has an ORM score

    mixed = _problems([(True, False), (False, True), (True, True), (False, False)] * 5 + [(True, False)] * 3)
    first = best_of_n(mixed, ns=(4,), seed=7)
    assert first == best_of_n(mixed, ns=(4,), seed=7)
    assert first != best_of_n(mixed, ns=(4,), seed=8)
    row = first["4"]["prm_min"]
    assert row["low"] <= row["mean"] <= row["high"] and row["low"] < row["high"]
    assert row["vs_majority"]["mean"] == pytest.approx(3 / 23)
    assert row["vs_majority"]["low"] <= 0 and row["beats_majority"] is False


# ---------------------------------------------------------------- the command


PROBLEMS = [
    {"problem_id": "a", "question": "Q: 2+3=?", "answer": "5"},
    {"problem_id": "b", "question": "Q: 4*2=?", "answer": "8"},
]
A_WRONG, A_RIGHT, A_OTHER = "Step 1: 2+3=6 Answer: 6", "Step 1: 2+3=5 Answer: 5", "Step 1: 2+3=7 Answer: 7"
B_RIGHT, B_WRONG = "Step 1: 4*2=8 Answer: 8", "Step 1: 4*2=9 Answer: 9"
PRM_SCORES = {(A_WRONG,): [0.2], (A_RIGHT,): [0.8], (A_OTHER,): [0.3], (B_RIGHT,): [0.4], (B_WRONG,): [0.7]}
ORM_SCORES = {(A_WRONG,): [0.9], (A_RIGHT,): [0.1], (A_OTHER,): [0.2], (B_RIGHT,): [0.6], (B_WRONG,): [0.3]}


def _record(step: str | None, answer: str | None, correct: bool) -> dict:
    return {"text": step or "", "steps": [step] if step else [], "answer": answer, "correct": correct}


SAMPLES = [
    {**PROBLEMS[0], "samples": [_record(A_WRONG, "6", False), _record(A_RIGHT, "5", True),
                                _record(A_OTHER, "7", False), _record(A_WRONG, "6", False)]},
    {**PROBLEMS[1], "samples": [_record(B_RIGHT, "8", True), _record(B_RIGHT, "8", True),
                                _record(B_WRONG, "9", False), _record(None, None, False)]},
]  # fmt: skip


@pytest.fixture
def scripted(monkeypatch):
    scorers = {"prm-a": ScriptedScorer("prm-a", PRM_SCORES), "orm-a": ScriptedScorer("orm-a", ORM_SCORES)}
    monkeypatch.setattr(evaluate_prm, "load_scorer", lambda path: scorers[path])

    def no_generation(*args, **kwargs):
        raise AssertionError("the samples file matches: nothing may be generated")

    monkeypatch.setattr(evaluate_prm, "generate_samples", no_generation)
    return scorers


def _problems_file(tmp_path: Path) -> Path:
    path = tmp_path / "held_out.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    return path


def _prepared_samples(tmp_path: Path, problems: Path, samples: int = 4) -> Path:
    setting = evaluate_prm.samples_setting(load_config(evaluate_prm.DEFAULT_CONFIG), problems, samples)
    path = tmp_path / "samples.jsonl"
    evaluate_prm.write_samples(path, setting, SAMPLES)
    return path


def _bestofn_argv(problems: Path, samples_file: Path, output: Path, *extra: str) -> list[str]:
    return ["evaluate", "--benchmark", "bestofn", "--problems", str(problems), "--samples", "4", "--n", "4",
            "--samples-file", str(samples_file), "--prm", "prm-a", "--orm", "orm-a", "--output", str(output),
            *extra]  # fmt: skip


def test_evaluate_bestofn_command_on_a_prepared_samples_file(tmp_path, scripted):
    import run

    problems = _problems_file(tmp_path)
    samples_file = _prepared_samples(tmp_path, problems)
    output = tmp_path / "out.json"
    assert run.main(_bestofn_argv(problems, samples_file, output)) == 0
    result = json.loads(output.read_text())
    assert (result["benchmark"], result["problems"], result["samples_per_problem"]) == ("bestofn", 2, 4)
    assert result["orm"] == "orm-a" and result["ns"] == [4]
    table = result["prms"]["prm-a"]["best_of_n"]["4"]
    means = {method: row["mean"] for method, row in table.items()}
    # a: prm_min picks the right 0.8, the ORM and the vote pick "6"; b: prm_min picks the wrong 0.7, ORM and vote "8"
    assert means == {"prm_min": 0.5, "prm_last": 0.5, "orm": 0.5, "majority": 0.5, "random": 0.375, "oracle": 1.0}
    assert table["prm_min"]["vs_majority"]["mean"] == 0.0 and table["prm_min"]["beats_majority"] is False
    step_level = result["prms"]["prm-a"]["step_level"]
    # exact truth: 4 wrong paths (3 flagged at step 0), 3 right ones (1 left unflagged)
    assert (step_level["n_err"], step_level["n_cor"], step_level["n_paths"]) == (4, 3, 7)
    assert step_level["acc_err"] == 0.75 and step_level["acc_cor"] == round(1 / 3, 4)
    assert step_level["f1"] == round(2 * 0.75 * (1 / 3) / (0.75 + 1 / 3), 4)
    assert scripted["prm-a"].calls == 1 and scripted["orm-a"].calls == 1


def test_bestofn_regenerates_a_samples_file_made_with_another_setting(tmp_path, scripted, monkeypatch):
    import run

    problems = _problems_file(tmp_path)
    samples_file = _prepared_samples(tmp_path, problems, samples=8)  # recorded S = 8, the command asks for 4
    calls = []

    def generate(config, rows, samples):
        calls.append((len(rows), samples))
        return SAMPLES

    monkeypatch.setattr(evaluate_prm, "generate_samples", generate)
    assert run.main(_bestofn_argv(problems, samples_file, tmp_path / "out.json")) == 0
    assert calls == [(2, 4)]
    header = json.loads(samples_file.read_text().splitlines()[0])
    assert header["setting"]["samples"] == 4 and header["setting"]["format"] == evaluate_prm.SAMPLES_FORMAT


def test_bestofn_refuses_fewer_samples_than_the_largest_n(tmp_path, scripted, capsys):
    import run

    problems = _problems_file(tmp_path)
    argv = _bestofn_argv(problems, tmp_path / "s.jsonl", tmp_path / "o.json")
    argv[argv.index("--n") + 1] = "4,16"
    assert run.main(argv) == 2
    assert "--samples: 4 is fewer than the largest N (16)" in capsys.readouterr().err


def test_report_renders_evaluation_results_and_keeps_the_page_without_them(tmp_path, scripted):
    import run

    run_dir, _ = make_fake_run(tmp_path / "run")
    plain_html = report.write_report(run_dir).read_bytes()

    problems = _problems_file(tmp_path)
    samples_file = _prepared_samples(tmp_path, problems)
    argv = _bestofn_argv(problems, samples_file, tmp_path / "out.json", "--run", str(run_dir))
    assert run.main(argv) == 0
    written = run_dir / "evaluation" / "bestofn-prm-a.json"
    assert json.loads(written.read_text())["prms"]["prm-a"]["best_of_n"]["4"]["oracle"]["mean"] == 1.0

    html_path = report.write_report(run_dir)
    page = html_path.read_text()
    assert 'id="table-evaluation-bestofn-prm-a-prm-a"' in page
    assert 'data-key="bestofn-prm-a.prm-a.4.prm_min"' in page and "0.500 [" in page
    assert 'data-plot="evaluation-bestofn-prm-a"' in page
    png = html_path.parent / "evaluation-bestofn-prm-a.png"
    assert png.read_bytes().startswith(PNG_SIGNATURE)

    written.unlink()
    (run_dir / "evaluation").rmdir()
    assert report.write_report(run_dir).read_bytes() == plain_html
    assert not png.exists(), "a stale best-of-N plot is removed"


def test_report_renders_a_step_level_evaluation(tmp_path):
    run_dir, _ = make_fake_run(tmp_path / "run")
    (run_dir / "evaluation").mkdir()
    scores = {"acc_err": 0.5, "acc_cor": 0.25, "f1": 0.3333, "n_err": 2, "n_cor": 4, "step_auroc": 0.75}
    evaluation = {"benchmark": "processbench", "n": 6, "threshold": 0.5, "annotators": {"prm-a": scores}}
    (run_dir / "evaluation" / "processbench-prm-a.json").write_text(json.dumps(evaluation))
    page = report.write_report(run_dir).read_text()
    assert 'id="table-evaluation-processbench-prm-a-scores"' in page
    assert 'data-key="evaluation-processbench-prm-a-scores.prm-a.f1">0.3333<' in page
    assert not list((run_dir / "report").glob("evaluation-*.png")), "step-level results have no best-of-N plot"


def test_prm800k_auroc_and_accuracy_of_the_rated_step(tmp_path):
    record = {
        "question": {"problem": "What is 2*3?"},
        "label": {
            "steps": [
                {"completions": [{"text": "6.", "rating": 1}, {"text": "7.", "rating": -1}], "chosen_completion": 0},
                {"completions": [{"text": "So 6.", "rating": 0}], "chosen_completion": 0},
                {"completions": [{"text": "No, 8.", "rating": -1}], "chosen_completion": None},
            ]
        },
    }
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(record) + "\n")
    scorer = ScriptedScorer("prm-a", {("6.",): [0.9], ("7.",): [0.6], ("6.", "So 6.", "No, 8."): [0.9, 0.9, 0.2]})
    result = evaluate_prm.prm_prm800k([scorer], path, threshold=0.5)
    assert (result["pairs"], result["scored"], result["positives"]) == (4, 3, 1)  # the neutral rating is excluded
    scores = result["annotators"]["prm-a"]
    assert scores["auroc"] == 1.0 and scores["accuracy"] == round(2 / 3, 4) and scores["predicted_right"] == 2


def test_evaluate_exact_with_a_prm_writes_into_the_run(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    import run

    run_dir = tmp_path / "run"
    (run_dir / "data").mkdir(parents=True)
    (run_dir / "manifest.json").write_text("{}")
    rows = [
        {"prompt": "Q: 2+3*4=?", "completions": ["Step 1: 3*4=12", "Step 2: 2+12=15 Answer: 15"]},  # exact: 1
        {"prompt": "Q: 5+5=?", "completions": ["Step 1: 5+5=10 Answer: 10"]},  # exact: -1
        {"prompt": "What is love?", "completions": ["Baby don't hurt me"]},  # not arithmetic: skipped
    ]
    pq.write_table(pa.Table.from_pylist(rows), run_dir / "data" / "train-00000-of-00001.parquet")
    scorer = ScriptedScorer("prm x", {tuple(rows[0]["completions"]): [0.9, 0.1], tuple(rows[1]["completions"]): [0.3]})
    monkeypatch.setattr(evaluate_prm, "load_scorer", lambda path: scorer)
    assert run.main(["evaluate", "--benchmark", "exact", "--run", str(run_dir), "--prm", "ckpt"]) == 0
    written = json.loads((run_dir / "evaluation" / "exact-arithmetic-prm_x.json").read_text())
    scores = written["annotators"]["prm x"]
    assert (scores["acc_err"], scores["acc_cor"], scores["f1"], scores["n_paths"]) == (1.0, 0.0, 0.0, 2)
