"""The TRL export trains as it is: TRL 1.13.0's own PRMTrainer tokenizes it and takes a step (docs/methods.md §3.1).

Needs `trl==1.13.0` (requirements-test.txt; the last release with `trl.experimental.prm`) and the shipped tiny
model `models/tiny-arith` (its tokenizer and Llama config, loaded as a 2-label token classifier).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from commands.export import export_run
from schemas.tables import PATHS, table_bytes

pytestmark = pytest.mark.slow

ROWS = [
    {
        "prompt": "Q: 3+4*2=?",
        "completions": ["Step 1: 4*2=8", "Step 2: 3+8=11 Answer: 11"],
        "labels": [True, True],
        "mc_values": [1.0, 1.0],
    },
    {
        "prompt": "Q: 7-2*3=?",
        "completions": ["Step 1: 2*3=6", "Step 2: 7-6=2", "Step 3: Answer: 2"],
        "labels": [True, False, False],
        "mc_values": [0.5, 0.0, 0.0],
    },
    {  # a newline inside a step: the export's stated rule replaces it, so TRL's "\n" separator stays unambiguous
        "prompt": "Q: 9+1=?",
        "completions": ["Step 1:\n9+1=10", "Step 2: Answer: 10"],
        "labels": [True, True],
        "mc_values": [1.0, 1.0],
    },
    {
        "prompt": "Q: 5*5-1=?",
        "completions": ["Step 1: 5*5=25", "Step 2: 25-1=23 Answer: 23"],
        "labels": [True, False],
        "mc_values": [0.25, 0.0],
    },
]


def _paths_row(i: int, row: dict) -> dict:
    n = len(row["completions"])
    return {
        "id": f"r{i}",
        "problem_id": f"p{i}",
        "source": "arithmetic",
        **row,
        "n_correct": [0] * n,
        "n_rollouts": [4] * n,
        "label_policy": "mc>0",
        "first_error_index": next((j for j, ok in enumerate(row["labels"]) if not ok), -1),
        "truncated_after_first_error": False,
        "is_terminal": True,
        "final_answer": None,
        "outcome_correct": row["labels"][-1],
        "gold_answer": "0",
        "policy_model": "models/tiny-arith",
        "search": "math_shepherd",
        "seed": 0,
        "config_hash": "test",
        "schema_version": "1",
        "meta": "{}",
    }


@pytest.fixture(scope="module")
def prm():
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # PRMTrainer lives in trl.experimental in 1.13.0
    try:
        from trl.experimental.prm import PRMConfig, PRMTrainer
    except ImportError:
        pytest.skip("trl==1.13.0 with trl.experimental.prm is not installed (pip install -r requirements-test.txt)")
    return PRMConfig, PRMTrainer


def test_prm_trainer_tokenizes_and_trains_on_the_trl_export(tmp_path: Path, tiny_model_dir: Path, prm):
    import datasets
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    PRMConfig, PRMTrainer = prm
    torch.set_num_threads(1)  # 2 shared cores

    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    rows = [_paths_row(i, row) for i, row in enumerate(ROWS)]
    (run / "data" / "train-00000-of-00001.parquet").write_bytes(table_bytes(rows, PATHS, "zstd", 1000))
    summary = export_run(run, "trl")
    assert summary["rows_out"] == len(ROWS) and summary["rules"] == {
        "separator_replaced_rows": 1,
        "separator_replaced_steps": 1,
    }
    dataset = datasets.load_dataset(
        "parquet", data_files=str(run / "exports" / "trl" / "train-*.parquet"), split="train"
    )
    assert dataset.column_names == ["prompt", "completions", "labels"]

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=2, dtype=torch.float32)
    assert type(model).__name__ == "LlamaForTokenClassification"
    args = PRMConfig(
        output_dir=str(tmp_path / "prm"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        seed=0,
    )
    assert args.step_separator == "\n"
    trainer = PRMTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)

    # TRL's own tokenize_row: exactly one non -100 label per step, on the separator that ends it, equal to int(label).
    separator_ids = tokenizer.encode("\n", add_special_tokens=False)
    assert len(separator_ids) == 1
    for source, tokenized in zip(dataset, trainer.train_dataset, strict=True):
        input_ids, labels = tokenized["input_ids"], tokenized["labels"]
        prompt_len = 1 + len(tokenizer(source["prompt"], add_special_tokens=False)["input_ids"])  # BOS + prompt
        expected_positions, position = [], prompt_len
        for step in source["completions"]:
            position += len(tokenizer(step, add_special_tokens=False)["input_ids"]) + 1
            expected_positions.append(position - 1)
        labelled = [i for i, label in enumerate(labels) if label != -100]
        assert labelled == expected_positions
        assert [input_ids[i] for i in labelled] == separator_ids * len(source["completions"])
        assert [labels[i] for i in labelled] == [int(label) for label in source["labels"]]
        # No separator token anywhere else in the completion, so inference can find the steps again.
        assert input_ids[prompt_len:].count(separator_ids[0]) == len(source["completions"])

    result = trainer.train()
    assert result.global_step == 2
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert math.isfinite(result.training_loss)
