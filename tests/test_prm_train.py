"""The PRM trainer (`run.py train`): TRL 1.13.0's label alignment, training that moves the loss, exact resume,
a checkpoint that loads as a plain token classifier, and scores read at the training positions.

Uses the shipped tiny model `models/tiny-arith` as the base; rows are written as a run's labelled shard.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import pytest

from prm.alignment import AlignmentError, tokenize_row
from prm.examples import examples_of, split_by_problem, targets_of
from schemas.tables import PATHS, table_bytes

pytestmark = pytest.mark.slow

STEPS = [
    (["Step 1: 4*2=8", "Step 2: 3+8=11 Answer: 11"], "Q: 3+4*2=?", [True, True], [1.0, 0.875], True),
    (["Step 1: 2*3=6", "Step 2: 7-6=2", "Step 3: Answer: 2"], "Q: 7-2*3=?", [True, False, False], [0.5, 0, 0], False),
    (["Step 1:\n9+1=10", "Step 2: Answer: 10"], "Q: 9+1=?", [True, True], [1.0, 1.0], True),
    (["Step 1: 5*5=25", "Step 2: 25-1=23 Answer: 23"], "Q: 5*5-1=?", [True, False], [0.25, 0.0], False),
    (["Step 1: 6*2=12", "Step 2: 12+5=17 Answer: 17"], "Q: 6*2+5=?", [True, True], [0.75, 0.5], True),
    (["Step 1: 8-3=6", "Step 2: 6*2=12 Answer: 12"], "Q: (8-3)*2=?", [False, False], [0.0, 0.0], False),
]


def _row(i: int, steps, prompt, labels, mc, outcome) -> dict:
    return {
        "id": f"r{i}",
        "problem_id": f"p{i % 4}",
        "source": "arithmetic",
        "prompt": prompt,
        "completions": steps,
        "labels": labels,
        "mc_values": mc,
        "n_correct": [0] * len(steps),
        "n_rollouts": [8] * len(steps),
        "label_policy": "mc>0",
        "first_error_index": next((j for j, ok in enumerate(labels) if not ok), -1),
        "truncated_after_first_error": False,
        "is_terminal": True,
        "final_answer": None,
        "outcome_correct": outcome,
        "gold_answer": "0",
        "policy_model": "models/tiny-arith",
        "search": "math_shepherd",
        "seed": 0,
        "config_hash": "test",
        "schema_version": "1",
        "meta": "{}",
    }


ROWS = [_row(i, *row) for i, row in enumerate(STEPS)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    (run / "data").mkdir()
    (run / "data" / "train-00000-of-00001.parquet").write_bytes(table_bytes(ROWS, PATHS, "zstd", 1000))
    return run


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _config(run: Path, base: Path, output: Path, **changes):
    from prm.train import TrainConfig

    settings = dict(
        base=str(base),
        output=str(output),
        runs=[str(run)],
        max_steps=4,
        batch_size=2,
        learning_rate=3e-3,
        validation_fraction=0.25,
        eval_every=2,
        save_every=2,
        log_every=1,
        threads=1,
        device="cpu",
    )
    return TrainConfig(**{**settings, **changes})


def test_alignment_equals_trl_1_13_tokenize_row(tokenizer):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # PRMTrainer lives in trl.experimental in 1.13.0
    pytest.importorskip("trl", reason="trl==1.13.0 (requirements-test.txt) checks the alignment")
    try:
        from trl.experimental.prm import PRMTrainer
    except ImportError:
        pytest.skip("this TRL has no trl.experimental.prm (PRMTrainer was removed after 1.13.0)")
    for row in ROWS:
        steps = [s.replace("\n", " ") for s in row["completions"]]  # the export's separator rule
        theirs = PRMTrainer.tokenize_row(
            {"prompt": row["prompt"], "completions": steps, "labels": row["labels"]},
            tokenizer,
            "\n",
            None,
            None,
            False,
            False,
        )
        ours = tokenize_row(tokenizer, row["prompt"], row["completions"], row["labels"], "\n")
        assert ours["input_ids"] == theirs["input_ids"]
        assert ours["labels"] == theirs["labels"]
        assert ours["step_positions"] == [i for i, label in enumerate(theirs["labels"]) if label != -100]


def test_soft_and_ignored_targets_sit_on_the_same_positions(tokenizer):
    row = ROWS[1]
    hard = tokenize_row(tokenizer, row["prompt"], row["completions"], row["labels"])
    soft = tokenize_row(tokenizer, row["prompt"], row["completions"], row["mc_values"])
    outcome = tokenize_row(tokenizer, row["prompt"], row["completions"], [None, None, 0.0])
    assert soft["step_positions"] == hard["step_positions"] == outcome["step_positions"]
    assert [soft["labels"][p] for p in soft["step_positions"]] == [0.5, 0.0, 0.0]
    assert [t for t in outcome["labels"] if t != -100] == [0.0]
    cut = tokenize_row(tokenizer, row["prompt"], row["completions"], row["labels"], max_length=12)
    assert len(cut["input_ids"]) == 12 and all(p < 12 for p in cut["step_positions"])
    with pytest.raises(AlignmentError, match="3 steps but 2 labels"):
        tokenize_row(tokenizer, row["prompt"], row["completions"], [True, False])
    with pytest.raises(AlignmentError, match=r"\[0, 1\]"):
        tokenize_row(tokenizer, row["prompt"], row["completions"], [0.5, 1.5, 0.0])


def test_label_kinds_and_the_split_by_problem():
    assert targets_of(ROWS[1], "hard") == (1.0, 0.0, 0.0)
    assert targets_of(ROWS[1], "soft") == (0.5, 0.0, 0.0)
    assert targets_of(ROWS[1], "outcome") == (None, None, 0.0)
    assert targets_of(ROWS[3], "exact") == (1.0, 0.0)  # 25-1=23 is the first exact error
    assert targets_of(ROWS[5], "exact") is None  # "(8-3)*2" is outside the arithmetic questions
    skipped: Counter = Counter()
    examples = examples_of(ROWS, "exact", skipped)
    assert len(examples) == 5 and skipped == {"no exact labels": 1}
    train, validation = split_by_problem(examples_of(ROWS, "hard"), 0.5, seed=3)
    assert train and validation
    assert not {e.problem_id for e in train} & {e.problem_id for e in validation}


def test_training_moves_the_loss_and_the_checkpoint_loads_and_scores(run_dir, tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForTokenClassification

    from prm.score import PRM
    from prm.train import METRICS, PLOT, train

    output = tmp_path / "prm"
    metrics = train(_config(run_dir, tiny_model_dir, output, max_steps=6), progress=lambda _: None)
    losses = [h["loss"] for h in metrics["history"] if "loss" in h]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert (output / METRICS).is_file() and (output / PLOT).read_bytes().startswith(b"\x89PNG")
    assert metrics["examples"]["validation_solutions"] > 0 and "first_error_f1" in metrics["validation"]

    model = AutoModelForTokenClassification.from_pretrained(output)
    assert type(model).__name__ == "LlamaForTokenClassification" and model.config.num_labels == 2
    prm = PRM.from_pretrained(output, device="cpu")
    row = ROWS[1]
    scores = prm.score(row["prompt"], row["completions"])
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    features = tokenize_row(prm.tokenizer, row["prompt"], row["completions"], [None] * 3)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([features["input_ids"]])).logits[0]
    direct = torch.softmax(logits, dim=-1)[features["step_positions"], 1].tolist()
    assert scores == pytest.approx(direct, abs=1e-5)
    batch = prm.score_batch([(r["prompt"], r["completions"]) for r in ROWS], batch_size=4)
    assert batch[1] == pytest.approx(scores, abs=1e-5) and [len(s) for s in batch] == [
        len(r["completions"]) for r in ROWS
    ]


def test_resume_continues_from_the_checkpoint_step_to_the_same_weights(run_dir, tiny_model_dir, tmp_path):
    import shutil

    from prm.train import CHECKPOINTS, TrainError, train

    straight = tmp_path / "straight"
    train(_config(run_dir, tiny_model_dir, straight), progress=lambda _: None)

    resumed = tmp_path / "resumed"
    train(_config(run_dir, tiny_model_dir, resumed, max_steps=4), progress=lambda _: None)
    shutil.rmtree(resumed / CHECKPOINTS / "checkpoint-4")  # as if killed after the step-2 checkpoint
    (resumed / "model.safetensors").unlink()
    said: list[str] = []
    metrics = train(_config(run_dir, tiny_model_dir, resumed), progress=said.append)
    assert any("resuming from" in line and "at step 2/4" in line for line in said)
    assert [h["step"] for h in metrics["history"] if "loss" in h] == [1, 2, 3, 4]
    assert (resumed / "model.safetensors").read_bytes() == (straight / "model.safetensors").read_bytes()

    with pytest.raises(TrainError, match="learning_rate"):
        train(_config(run_dir, tiny_model_dir, resumed, learning_rate=1e-4), progress=lambda _: None)
