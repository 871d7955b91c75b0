"""Trainer-format converters, importers, the OpenRLHF contract check, and `export`/`import` on run folders."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from commands.export import add_export_commands, export_run, import_rows
from schemas import formats
from schemas.formats import FormatError, check_openrlhf_row
from schemas.tables import PATHS, paths_schema, table_bytes

PRM800K_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "prm800k" / "phase1_test.jsonl"


def path_row(**overrides):
    """A PATHS row as the label stage writes it (annotators.mc.label_paths + provenance)."""
    row = {
        "id": "r1",
        "problem_id": "p1",
        "source": "arithmetic",
        "prompt": "Q: 3+4*2=?",
        "completions": ["Step 1: 4*2=8", "Step 2: 3+8=12", "Step 3: Answer: 12"],
        "labels": [True, False, False],
        "mc_values": [0.75, 0.0, 0.0],
        "n_correct": [3, 0, 0],
        "n_rollouts": [4, 4, 1],
        "label_policy": "mc>0",
        "first_error_index": 1,
        "truncated_after_first_error": False,
        "is_terminal": True,
        "final_answer": "12",
        "outcome_correct": False,
        "gold_answer": "11",
        "policy_model": "models/tiny-arith",
        "search": "math_shepherd",
        "seed": 0,
        "config_hash": "abc",
        "schema_version": "1",
        "meta": json.dumps({"solution_index": 0}),
    }
    row.update(overrides)
    return row


# ---------------------------------------------------------------- TRL


def test_trl_keeps_the_three_columns_and_bool_labels():
    out = formats.to_trl(path_row())
    assert out == {
        "prompt": "Q: 3+4*2=?",
        "completions": ["Step 1: 4*2=8", "Step 2: 3+8=12", "Step 3: Answer: 12"],
        "labels": [True, False, False],
    }
    assert all(type(label) is bool for label in out["labels"])


def test_trl_separator_inside_a_step_is_replaced_and_counted():
    stats = Counter()
    row = path_row(completions=["Step 1:\n4*2=8", "Step 2: 3+8=12\n\n# Answer\n\n12", "Step 3"])
    out = formats.to_trl(row, stats=stats)
    assert out["completions"] == ["Step 1: 4*2=8", "Step 2: 3+8=12  # Answer  12", "Step 3"]
    assert all("\n" not in step for step in out["completions"])
    assert stats == {"separator_replaced_steps": 2, "separator_replaced_rows": 1}


def test_trl_separator_rule_can_refuse_or_use_another_separator():
    row = path_row(completions=["a\nb", "c", "d"])
    with pytest.raises(FormatError, match=r"step 0 contains the step separator '\\n'.*--separator"):
        formats.to_trl(row, on_separator="error")
    stats = Counter()
    out = formats.to_trl(row, separator="\n\n", stats=stats)  # a single newline is no longer a separator
    assert out["completions"] == ["a\nb", "c", "d"] and not stats
    out = formats.to_trl(path_row(completions=["a\n\n\nb", "c", "d"]), separator="\n\n")
    assert out["completions"] == ["a \nb", "c", "d"]
    with pytest.raises(ValueError, match="space"):
        formats.to_trl(row, separator=" \n")


def test_rows_without_steps_are_skipped_in_every_format():
    empty = path_row(completions=[], labels=[], mc_values=[])
    for convert in (formats.to_trl, formats.to_openrlhf, formats.to_qwen_prm, formats.to_prm800k):
        stats = Counter()
        assert convert(empty, stats=stats) is None
        assert stats == {"empty_skipped_rows": 1}
    with pytest.raises(FormatError, match="3 steps but 2 labels"):
        formats.to_trl(path_row(labels=[True, False]))


# ---------------------------------------------------------------- OpenRLHF


def test_openrlhf_hard_row_matches_the_math_shepherd_layout_and_the_contract():
    out = formats.to_openrlhf(path_row())
    assert out == {
        "input": "Q: 3+4*2=? Step 1: 4*2=8 ки\nStep 2: 3+8=12 ки\nStep 3: Answer: 12 ки",
        "label": ["+", "-", "-"],
    }
    assert check_openrlhf_row(out) == []


def test_openrlhf_soft_labels_are_float32_mc_values_positive_first():
    out = formats.to_openrlhf(path_row(mc_values=[1 / 3, 0.0, 1.0]), soft=True)
    assert out["label"] == [0.33333334, 0.0, 1.0]
    assert check_openrlhf_row(out) == []
    assert json.loads(json.dumps(out)) == out


def test_openrlhf_soft_null_mc_rule():
    row = path_row(mc_values=[None, 0.0, None])
    stats = Counter()
    assert formats.to_openrlhf(row, soft=True, stats=stats) is None
    assert stats == {"null_mc_skipped_rows": 1}
    stats = Counter()
    out = formats.to_openrlhf(row, soft=True, null_mc="hard", stats=stats)
    assert out["label"] == [1.0, 0.0, 0.0]  # filled from the hard labels True, False, False
    assert stats == {"null_mc_filled_steps": 2, "null_mc_filled_rows": 1}
    with pytest.raises(FormatError, match="null"):
        formats.to_openrlhf(row, soft=True, null_mc="error")
    with pytest.raises(FormatError, match="outside"):
        formats.to_openrlhf(path_row(mc_values=[1.5, 0.0, 0.0]), soft=True)


def test_openrlhf_pre_existing_placeholders_are_deleted_and_counted():
    stats = Counter()
    row = path_row(prompt="Q: ки 3+4*2=?", completions=["Step 1: 4*2=8 ки", "Step 2: кит", "Step 3"])
    out = formats.to_openrlhf(row, stats=stats)
    assert out["input"] == "Q:  3+4*2=? Step 1: 4*2=8  ки\nStep 2: т ки\nStep 3 ки"
    assert out["input"].count("ки") == 3
    assert check_openrlhf_row(out) == []
    assert stats == {"placeholder_removed_prompts": 1, "placeholder_removed_steps": 2, "placeholder_removed_rows": 1}


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"input": "q a ки\nb", "label": ["+", "-"]}, "1 placeholders"),
        ({"input": "q a ки\nb ки", "label": ["+", "x"]}, "not reward tokens"),
        ({"input": "q a ки\nb ки", "label": [0.5, 1.5]}, "outside"),
        ({"input": "q a ки\nb ки", "label": ["+", 0.5]}, "mix"),
        ({"input": "q a ки\nb ки", "label": [True, False]}, "mix"),
        ({"input": "q a ки", "label": []}, "non-empty"),
        ({"input": None, "label": ["+"]}, "not a string"),
    ],
)
def test_openrlhf_contract_check_rejects_broken_rows(row, problem):
    problems = check_openrlhf_row(row)
    assert problems and any(problem in p for p in problems), problems


class _CharTokenizer:
    """One token per character, except the words in `vocab`: enough to test the token-level checks."""

    def __init__(self, vocab=()):
        self.vocab = list(vocab)

    def encode(self, text, add_special_tokens=False):
        return self(text)["input_ids"]

    def __call__(self, text, add_special_tokens=False):
        ids, i = [], 0
        while i < len(text):
            word = next((w for w in self.vocab if text.startswith(w, i)), None)
            ids.append(1000 + self.vocab.index(word) if word else ord(text[i]))
            i += len(word) if word else 1
        return {"input_ids": ids}

    def decode(self, ids):
        return "".join(self.vocab[i - 1000] if i >= 1000 else chr(i) for i in ids)


def test_openrlhf_contract_check_at_token_level():
    row = formats.to_openrlhf(path_row())
    assert check_openrlhf_row(row, tokenizer=_CharTokenizer(vocab=["ки"])) == []
    problems = check_openrlhf_row(row, tokenizer=_CharTokenizer())
    assert problems == ["placeholder 'ки' encodes to 2 tokens, not 1"]


def test_placeholder_must_be_the_same_one_token_bare_and_after_a_step():
    # a separate space token before the placeholder's own id is fine: OpenRLHF counts the id
    assert formats.placeholder_problem(_CharTokenizer(vocab=["ки"])) is None
    problem = formats.placeholder_problem(_CharTokenizer())
    assert problem == (
        "placeholder 'ки' is not one token: OpenRLHF reads its id from 'ки' -> [1082, 1080], "
        "but ' ки' after a step encodes to [32, 1082, 1080]"
    )
    # the space merged into another token: the bare id never occurs in the text, so every label would be lost
    problem = formats.placeholder_problem(_CharTokenizer(vocab=[" ки", "ки"]))
    assert "'ки' -> [1001]" in problem and "' ки' after a step encodes to [1000]" in problem
    assert formats.placeholder_problem(_CharTokenizer(vocab=["@"]), "@") is None


# ---------------------------------------------------------------- Qwen2.5-Math-PRM, PRM800K, Math-Shepherd exports


def test_qwen_prm_messages_and_step_token_rule():
    out = formats.to_qwen_prm(path_row())
    assert out["messages"] == [
        {"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
        {"role": "user", "content": "Q: 3+4*2=?"},
        {"role": "assistant", "content": "Step 1: 4*2=8<extra_0>Step 2: 3+8=12<extra_0>Step 3: Answer: 12<extra_0>"},
    ]
    assert out["labels"] == [True, False, False]
    stats = Counter()
    out = formats.to_qwen_prm(path_row(completions=["a<extra_0>b", "c", "d"]), stats=stats)
    assert out["messages"][2]["content"].count("<extra_0>") == len(out["labels"]) == 3
    assert stats == {"step_token_removed_steps": 1, "step_token_removed_rows": 1}


def test_prm800k_export_follows_the_schema_and_round_trips():
    out = formats.to_prm800k(path_row())
    assert out["question"]["problem"] == "Q: 3+4*2=?" and out["question"]["ground_truth_answer"] == "11"
    assert [s["completions"][0]["rating"] for s in out["label"]["steps"]] == [1, -1, -1]
    assert all(s["chosen_completion"] == 0 and s["human_completion"] is None for s in out["label"]["steps"])
    assert out["label"]["finish_reason"] == "found_error" and out["generation"] is None
    assert formats.to_prm800k(path_row(labels=[True] * 3))["label"]["finish_reason"] == "solution"
    stats = Counter()
    unfinished = formats.to_prm800k(path_row(labels=[True] * 3, is_terminal=False), stats=stats)
    assert unfinished["label"]["finish_reason"] == "give_up" and stats == {"non_terminal_give_up_rows": 1}
    (back,) = formats.from_prm800k(json.loads(json.dumps(out)))
    for key in ("prompt", "completions", "labels", "gold_answer", "first_error_index"):
        assert back[key] == path_row()[key]


def test_math_shepherd_export_round_trips_through_the_importer():
    row = path_row()
    out = formats.to_math_shepherd(row)
    assert out["label"] == "Q: 3+4*2=? Step 1: 4*2=8 +\nStep 2: 3+8=12 -\nStep 3: Answer: 12 -"
    back = formats.from_math_shepherd(out)
    assert (back["prompt"], back["completions"], back["labels"]) == (row["prompt"], row["completions"], row["labels"])


# ---------------------------------------------------------------- importers

MATH_SHEPHERD_ROW = {
    "input": "Janet has 3 apples and buys 2 more. How many apples does she have? "
    "Step 1: She starts with 3 apples. ки\nStep 2: She buys 2, so 3 + 2 = <<3+2=5>>5. ки\n"
    "Step 3: The answer is: 5 ки",
    "label": "Janet has 3 apples and buys 2 more. How many apples does she have? "
    "Step 1: She starts with 3 apples. +\nStep 2: She buys 2, so 3 + 2 = <<3+2=5>>5. +\n"
    "Step 3: The answer is: 5 +",
    "task": "GSM8K",
}


def test_from_math_shepherd():
    row = formats.from_math_shepherd(MATH_SHEPHERD_ROW)
    assert row["prompt"] == "Janet has 3 apples and buys 2 more. How many apples does she have?"
    assert row["completions"] == [
        "Step 1: She starts with 3 apples.",
        "Step 2: She buys 2, so 3 + 2 = <<3+2=5>>5.",
        "Step 3: The answer is: 5",
    ]
    assert row["labels"] == [True, True, True] and row["first_error_index"] == -1
    assert row["final_answer"] == "5" and row["is_terminal"] and row["outcome_correct"] is True
    assert row["mc_values"] == [None] * 3 and row["label_policy"] == "mc>0" and row["source"] == "math_shepherd"
    assert json.loads(row["meta"])["task"] == "GSM8K"
    # Round trips: back to the original row, and OpenRLHF's input is the Math-Shepherd input.
    assert formats.to_math_shepherd(row) == MATH_SHEPHERD_ROW
    assert formats.to_openrlhf(row) == {"input": MATH_SHEPHERD_ROW["input"], "label": ["+", "+", "+"]}
    pa.Table.from_pylist([row], schema=paths_schema())


def test_from_math_shepherd_negative_labels_openrlhf_rows_and_bad_rows():
    negative = dict(MATH_SHEPHERD_ROW, label=MATH_SHEPHERD_ROW["label"].replace("5. +", "5. -"))
    assert formats.from_math_shepherd(negative)["labels"] == [True, False, True]
    hard = formats.from_math_shepherd({"input": MATH_SHEPHERD_ROW["input"], "label": ["+", "-", "-"]})
    assert hard["labels"] == [True, False, False] and hard["outcome_correct"] is False
    soft = formats.from_math_shepherd({"input": MATH_SHEPHERD_ROW["input"], "label": [0.5, 0.0, 1.0]})
    assert soft["mc_values"] == [0.5, 0.0, 1.0] and soft["labels"] == [True, False, True]
    with pytest.raises(FormatError, match="Step 1"):
        formats.from_math_shepherd({"input": "What is 2+2? It is 4. ки", "label": "What is 2+2? It is 4. +"})
    with pytest.raises(FormatError, match="align"):
        formats.from_math_shepherd(dict(MATH_SHEPHERD_ROW, label=MATH_SHEPHERD_ROW["label"] + " "))
    with pytest.raises(FormatError, match="placeholders"):
        formats.from_math_shepherd({"input": "no tags", "label": "no tags"})


def test_from_math_shepherd_drops_a_placeholder_inside_the_question():
    stats = Counter()
    text = "Mr. Rocky sells ки jam. How much? Step 1: 2 jars. ки\nStep 2: The answer is: 2 ки"
    row = formats.from_math_shepherd(
        {"input": text, "label": text.replace("ки", "-", 1).replace("ки", "+")}, stats=stats
    )
    assert row["prompt"] == "Mr. Rocky sells  jam. How much?"
    assert row["completions"] == ["Step 1: 2 jars.", "Step 2: The answer is: 2"] and row["labels"] == [True, True]
    assert stats == {"placeholder_in_prompt_dropped": 1}


def _completion(text, rating, flagged=False):
    return {"text": text, "rating": rating, "flagged": flagged}


PHASE1_RECORD = {
    "labeler": "00000000-0000-0000-0000-000000000001",
    "timestamp": "2022-07-30T23:23:32.118856",
    "generation": None,
    "is_quality_control_question": False,
    "is_initial_screening_question": False,
    "question": {"problem": "What is $2+3\\cdot 4$?", "ground_truth_answer": "14"},
    "label": {
        "steps": [
            {
                "completions": [_completion("First, $3\\cdot 4=12$.", 1)],
                "human_completion": None,
                "chosen_completion": 0,
            },
            {
                "completions": [_completion("Then $2+12=15$.", -1), _completion("Then $2+12=13$.", -1)],
                "human_completion": {"text": "Then $2+12=14$.", "rating": None, "source": "human", "flagged": False},
                "chosen_completion": None,
            },
            {
                "completions": [
                    _completion("Let me double-check.", 0),
                    _completion("So it is 14.\n\n# Answer\n\n14", 1),
                ],
                "human_completion": None,
                "chosen_completion": 1,
            },
        ],
        "total_time": 1000,
        "finish_reason": "solution",
    },
}


def test_from_prm800k_trajectory_keeps_ratings_losslessly():
    (row,) = formats.from_prm800k(PHASE1_RECORD)
    assert row["prompt"] == "What is $2+3\\cdot 4$?"
    assert row["completions"] == ["First, $3\\cdot 4=12$.", "Then $2+12=14$.", "So it is 14.\n\n# Answer\n\n14"]
    assert row["labels"] == [True, True, True]  # the human step is a +1 step
    assert row["is_terminal"] and row["outcome_correct"] is True and row["final_answer"] == "14"
    assert row["label_policy"] == "prm800k:rating==1" and row["gold_answer"] == "14" and row["source"] == "prm800k"
    meta = json.loads(row["meta"])
    assert meta["prm800k"] == PHASE1_RECORD
    assert meta["path"] == {"ratings": [1, None, 1], "origins": ["chosen:0", "human", "chosen:1"], "stopped": None}
    pa.Table.from_pylist([row], schema=paths_schema())


def test_from_prm800k_alternatives_and_neutral_policies():
    rows = formats.from_prm800k(PHASE1_RECORD, alternatives=True)
    main, *branches = rows
    assert [(r["completions"][-1], r["labels"]) for r in branches] == [
        ("Then $2+12=15$.", [True, False]),
        ("Then $2+12=13$.", [True, False]),
        ("Let me double-check.", [True, True, False]),  # neutral -> negative (TRL's rule)
    ]
    assert all(json.loads(r["meta"])["alternative_of"] == main["id"] for r in branches)
    assert not any(r["is_terminal"] for r in branches) and branches[0]["truncated_after_first_error"]
    assert len({r["id"] for r in rows}) == len(rows)
    positive = formats.from_prm800k(PHASE1_RECORD, neutral="positive", alternatives=True)
    assert positive[-1]["labels"] == [True, True, True] and positive[0]["label_policy"] == "prm800k:rating>=0"
    stats = Counter()
    dropped = formats.from_prm800k(PHASE1_RECORD, neutral="drop", alternatives=True, stats=stats)
    assert len(dropped) == 3 and stats["neutral_alternatives_dropped"] == 1


def test_from_prm800k_corrected_human_rating_and_unlabelled_last_step():
    record = json.loads(json.dumps(PHASE1_RECORD))
    record["label"]["steps"][1]["human_completion"]["corrected_rating"] = -1
    record["label"]["steps"][2] = {
        "completions": [_completion("More.", None)],
        "human_completion": None,
        "chosen_completion": None,
    }
    record["label"]["finish_reason"] = "give_up"
    (row,) = formats.from_prm800k(record)
    assert row["labels"] == [True, False] and row["first_error_index"] == 1
    assert not row["is_terminal"] and row["outcome_correct"] is None
    assert json.loads(row["meta"])["path"]["stopped"] == "unlabelled step"


def test_from_prm800k_phase2_stops_at_the_first_error():
    steps = ["I add.", "So $2+3\\cdot 4=20$.\n\n# Answer\n\n20"]
    record = {
        "labeler": "l2",
        "timestamp": "2023-01-22T04:34:27",
        "generation": 9,
        "is_quality_control_question": False,
        "is_initial_screening_question": False,
        "question": {
            "problem": "What is $2+3\\cdot 4$?",
            "ground_truth_answer": "14",
            "pre_generated_steps": steps,
            "pre_generated_answer": "20",
            "pre_generated_verifier_score": 0.01,
        },
        "label": {
            "steps": [
                {"completions": [_completion(steps[0], 0)], "human_completion": None, "chosen_completion": 0},
                {
                    "completions": [_completion(steps[1], -1), _completion("So it is 14.\n\n# Answer\n\n14", 1)],
                    "human_completion": None,
                    "chosen_completion": None,
                },
            ],
            "total_time": 5,
            "finish_reason": "found_error",
        },
    }
    main, branch = formats.from_prm800k(record, neutral="positive", alternatives=True)
    assert main["completions"] == steps and main["labels"] == [True, False]
    assert main["truncated_after_first_error"] and not main["is_terminal"] and main["search"] == "prm800k:phase2"
    assert main["final_answer"] == "20" and main["outcome_correct"] is None
    assert branch["completions"] == [steps[0], "So it is 14.\n\n# Answer\n\n14"] and branch["labels"] == [True, True]
    assert branch["is_terminal"] and branch["final_answer"] == "14" and branch["outcome_correct"] is True
    assert formats.from_prm800k(record, neutral="negative")[0]["labels"] == [False, False]
    stats = Counter()
    assert formats.from_prm800k(record, neutral="drop", alternatives=True, stats=stats) == []  # cut before step 0
    assert stats == {"neutral_paths_cut": 1}


@pytest.mark.skipif(not PRM800K_PATH.exists(), reason=f"PRM800K sample not found at {PRM800K_PATH}")
def test_from_prm800k_on_real_phase1_lines():
    records = [json.loads(line) for line in PRM800K_PATH.read_text().splitlines()[:40]]
    for record in records:
        rows = formats.from_prm800k(record, alternatives=True)
        main = [r for r in rows if "alternative_of" not in json.loads(r["meta"])]
        steps = record["label"]["steps"]
        # The README reconstruction, where every step is labelled, is the trajectory.
        expected = []
        for s in steps:
            if s["chosen_completion"] is not None:
                expected.append(s["completions"][s["chosen_completion"]]["text"])
            elif s["human_completion"] is not None:
                expected.append(s["human_completion"]["text"])
            else:
                break
        assert (main[0]["completions"] if main else []) == expected
        if main:
            assert json.loads(main[0]["meta"])["prm800k"] == record
            assert main[0]["is_terminal"] == (record["label"]["finish_reason"] == "solution")
        rated = sum(
            1
            for s in steps
            for j, c in enumerate(s["completions"] or [])
            if j != s["chosen_completion"] and c["rating"] is not None
        )
        assert len(rows) - len(main) == rated
        pa.Table.from_pylist(rows, schema=paths_schema())


# ---------------------------------------------------------------- export / import on folders


def _write_run(run: Path, shards: list[list[dict]]) -> None:
    (run / "data").mkdir(parents=True)
    for i, rows in enumerate(shards):
        payload = table_bytes(rows, PATHS, "zstd", 1000)
        (run / "data" / f"train-{i:05d}-of-{len(shards):05d}.parquet").write_bytes(payload)


def _produced_rows():
    return [
        [
            path_row(),
            path_row(
                id="r2", completions=["Step 1:\n4*2=8", "Step 2: 3+8=11"], labels=[True, True], mc_values=[1.0, 1.0]
            ),
        ],
        [
            path_row(id="r3", mc_values=[None, 0.0, 0.0]),
            path_row(id="r4", prompt="Q: ки?", completions=[], labels=[], mc_values=[]),
        ],
    ]


def test_export_run_writes_every_format_deterministically(tmp_path):
    run = tmp_path / "run"
    _write_run(run, _produced_rows())
    for fmt, suffix in [("trl", "parquet"), ("qwen-prm", "parquet"), ("openrlhf", "jsonl"), ("prm800k", "jsonl")]:
        summary = export_run(run, fmt)
        files = sorted((run / "exports" / fmt).glob("train-*"))
        assert [f.name for f in files] == [f"train-0000{i}-of-00002.{suffix}" for i in range(2)]
        first = [f.read_bytes() for f in files]
        export_run(run, fmt)
        assert [f.read_bytes() for f in files] == first, fmt
        assert summary["rows_in"] == 4 and summary["rows_out"] == 3 and summary["balanced"]
        assert summary["rules"]["empty_skipped_rows"] == 1
        assert json.loads((run / "exports" / fmt / "export.json").read_text()) == summary
    trl = export_run(run, "trl")
    assert trl["rules"]["separator_replaced_steps"] == 1 and trl["steps_out"] == 8
    table = pq.read_table(run / "exports" / "trl" / "train-00000-of-00002.parquet")
    assert table.column_names == ["prompt", "completions", "labels"]
    assert table.to_pylist()[1]["completions"] == ["Step 1: 4*2=8", "Step 2: 3+8=11"]
    lines = (run / "exports" / "openrlhf" / "train-00000-of-00002.jsonl").read_text().splitlines()
    assert all(check_openrlhf_row(json.loads(line)) == [] for line in lines)
    soft = export_run(run, "openrlhf", soft=True, output=tmp_path / "soft")
    assert soft["rows_out"] == 2 and soft["rows_skipped"] == 2 and soft["rules"]["null_mc_skipped_rows"] == 1
    soft_rows = [json.loads(x) for f in sorted((tmp_path / "soft").glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert [r["label"] for r in soft_rows] == [[0.75, 0.0, 0.0], [1.0, 1.0]]
    assert all(check_openrlhf_row(r) == [] for r in soft_rows)


def test_export_run_refuses_bad_options_and_missing_runs(tmp_path):
    run = tmp_path / "run"
    _write_run(run, _produced_rows())
    with pytest.raises(ValueError, match="do not apply"):
        export_run(run, "trl", soft=True)
    with pytest.raises(ValueError, match="unknown export format"):
        export_run(run, "csv")
    with pytest.raises(FormatError, match="separator"):
        export_run(run, "trl", on_separator="error")
    with pytest.raises(FileNotFoundError):
        export_run(tmp_path / "nothing", "trl")


def test_export_removes_stale_shards_of_another_shard_count(tmp_path):
    run = tmp_path / "run"
    _write_run(run, _produced_rows())
    stale = run / "exports" / "trl" / "train-00000-of-00005.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    export_run(run, "trl")
    assert not stale.exists()


def test_import_then_export_and_cli(tmp_path, capsys):
    source = tmp_path / "ms.jsonl"
    bad = {"input": "no boundary ки", "label": "no boundary +"}
    source.write_text("\n".join([json.dumps(MATH_SHEPHERD_ROW), "{not json", json.dumps(bad)]) + "\n")
    manifest = import_rows(source, "math-shepherd", tmp_path / "imported")
    counts = manifest["counts"]
    assert counts["read"] == 3 and counts["paths"] == 1 and counts["dead_lettered"] == 2 and counts["balanced"]
    dead = [
        json.loads(x) for x in (tmp_path / "imported" / "dead_letters" / "dead_letters.jsonl").read_text().splitlines()
    ]
    assert sorted(d["reason"].split(":")[0] for d in dead) == ["FormatError", "FormatError"]
    table = pq.read_table(tmp_path / "imported" / "data" / "train-00000-of-00001.parquet")
    assert table.schema == paths_schema()
    assert (tmp_path / "imported" / "manifest.json").exists()

    parser = argparse.ArgumentParser()
    add_export_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", str(tmp_path / "imported"), "--format", "openrlhf"])
    assert args.func(args, []) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("exported 1 of 1 rows (3 steps) as openrlhf")
    line = (tmp_path / "imported" / "exports" / "openrlhf" / "train-00000-of-00001.jsonl").read_text()
    assert json.loads(line) == {"input": MATH_SHEPHERD_ROW["input"], "label": ["+", "+", "+"]}
    args = parser.parse_args(["export", str(tmp_path / "imported"), "--format", "trl", "--separator", "\\n\\n"])
    assert args.separator == "\\n\\n" and args.func(args, []) == 0
    summary = json.loads((tmp_path / "imported" / "exports" / "trl" / "export.json").read_text())
    assert summary["options"]["separator"] == "\n\n" and summary["trainer_config"] == {"step_separator": "\n\n"}
    capsys.readouterr()
    args = parser.parse_args(["import", str(source), "--format", "math-shepherd", "--output", str(tmp_path / "again")])
    assert args.func(args, []) == 0
    assert capsys.readouterr().out.startswith("imported 1 of 3 math-shepherd records as 1 paths")


@pytest.mark.skipif(not PRM800K_PATH.exists(), reason=f"PRM800K sample not found at {PRM800K_PATH}")
def test_import_prm800k_file_then_export_prm800k_round_trip(tmp_path):
    manifest = import_rows(PRM800K_PATH, "prm800k", tmp_path / "imported", neutral="positive", num_shards=2)
    counts = manifest["counts"]
    assert counts["balanced"] and counts["read"] == len(PRM800K_PATH.read_text().splitlines())
    assert counts["paths"] == counts["records_imported"] > 0
    summary = export_run(tmp_path / "imported", "prm800k")
    assert summary["rows_out"] == counts["paths"]
    exported = [
        json.loads(x)
        for f in sorted((tmp_path / "imported" / "exports" / "prm800k").glob("*.jsonl"))
        for x in f.read_text().splitlines()
    ]
    imported = [
        r for f in sorted((tmp_path / "imported" / "data").glob("*.parquet")) for r in pq.read_table(f).to_pylist()
    ]
    for record, row in zip(exported, imported, strict=True):
        (back,) = formats.from_prm800k(record)
        assert (back["prompt"], back["completions"], back["labels"]) == (
            row["prompt"],
            row["completions"],
            row["labels"],
        )


# ---------------------------------------------------------------- the OpenRLHF placeholder against a real tokenizer

SMOLLM2_DIR = Path(__file__).resolve().parents[1] / "models" / "smollm2-135m-instruct"


def _run_with_policy(tmp_path: Path, model: str) -> Path:
    run = tmp_path / "run"
    _write_run(run, _produced_rows())
    (run / "manifest.json").write_text(json.dumps({"config": {"policy": {"model": model}}}))
    return run


def test_openrlhf_export_refuses_a_placeholder_the_policy_tokenizer_splits(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    # tiny-arith's byte-level BPE has no Cyrillic merges: 'ки' is its four UTF-8 bytes
    assert tokenizer.encode("ки", add_special_tokens=False) == [143, 121, 143, 119]
    run = _run_with_policy(tmp_path, str(tiny_model_dir))
    with pytest.raises(ValueError, match=r"'ки' -> \[143, 121, 143, 119\].*--placeholder TOKEN"):
        export_run(run, "openrlhf")
    assert not (run / "exports" / "openrlhf").exists()

    summary = export_run(run, "openrlhf", placeholder="@")
    assert summary["placeholder_check"] == {"checked": True, "tokenizer": str(tiny_model_dir), "placeholder_id": 34}
    assert summary["trainer_config"]["placeholder_token"] == "@"
    rows = [json.loads(x) for f in sorted((run / "exports" / "openrlhf").glob("*.jsonl")) for x in f.open()]
    assert rows and all(check_openrlhf_row(r, placeholder="@", tokenizer=tokenizer) == [] for r in rows)
    assert rows[0]["input"] == "Q: 3+4*2=? Step 1: 4*2=8 @\nStep 2: 3+8=12 @\nStep 3: Answer: 12 @"

    # Math-Shepherd carries the same placeholder, and counts its steps by it
    shepherd = export_run(run, "math-shepherd", placeholder="@")
    assert shepherd["steps_out"] == 8 and shepherd["options"] == {"placeholder": "@"}


def test_openrlhf_export_says_when_no_tokenizer_checked_the_placeholder(tmp_path, capsys):
    run = _run_with_policy(tmp_path, "HuggingFaceTB/not-a-local-folder")
    summary = export_run(run, "openrlhf")
    assert summary["placeholder_check"] == {
        "checked": False,
        "reason": "no tokenizer: the run's policy model 'HuggingFaceTB/not-a-local-folder' is not a local folder; "
        "pass --tokenizer PATH_OR_ID",
    }
    with pytest.raises(ValueError, match="cannot load tokenizer"):
        export_run(run, "openrlhf", tokenizer=str(tmp_path / "no-such-tokenizer"))
    with pytest.raises(ValueError, match="without surrounding spaces"):
        export_run(run, "openrlhf", placeholder=" ки")
    with pytest.raises(ValueError, match="reward tokens"):
        export_run(run, "openrlhf", placeholder="+")

    parser = argparse.ArgumentParser()
    add_export_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", str(run), "--format", "openrlhf"])
    assert args.func(args, []) == 0
    assert (
        capsys.readouterr()
        .out.rstrip()
        .endswith("placeholder 'ки' not checked: " + summary["placeholder_check"]["reason"])
    )
    args = parser.parse_args(["export", str(run), "--format", "trl", "--tokenizer", "x"])
    assert args.func(args, []) == 2
    assert "does not apply to --format trl" in capsys.readouterr().out


def test_openrlhf_export_cli_refuses_then_takes_another_placeholder(tmp_path, tiny_model_dir, capsys):
    run = _run_with_policy(tmp_path, "not/used")
    parser = argparse.ArgumentParser()
    add_export_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", str(run), "--format", "openrlhf", "--tokenizer", str(tiny_model_dir)])
    assert args.func(args, []) == 2
    out = capsys.readouterr().out
    assert out.startswith("export failed: placeholder 'ки' is not one token") and "--placeholder TOKEN" in out
    argv = ["export", str(run), "--format", "openrlhf", "--tokenizer", str(tiny_model_dir), "--placeholder", "#"]
    args = parser.parse_args(argv)
    assert args.func(args, []) == 0
    assert f"placeholder '#' is one token (id 5) for {tiny_model_dir}" in capsys.readouterr().out


@pytest.mark.skipif(
    not (SMOLLM2_DIR / "tokenizer.json").exists(),
    reason=f"SmolLM2 is not converted at {SMOLLM2_DIR} (run scripts/fetch_smollm2.sh)",
)
def test_smollm2_tokenizer_splits_the_default_placeholder(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2_DIR)
    problem = formats.placeholder_problem(tokenizer)
    assert problem == (
        "placeholder 'ки' is not one token: OpenRLHF reads its id from 'ки' -> [13760, 7872], "
        "but ' ки' after a step encodes to [31338, 7872]"
    )
    assert formats.placeholder_problem(tokenizer, "<|endoftext|>") is None
    run = _run_with_policy(tmp_path, str(SMOLLM2_DIR))
    with pytest.raises(ValueError, match=r"this tokenizer's '<\|endoftext\|>'.* would do"):
        export_run(run, "openrlhf")
    summary = export_run(run, "openrlhf", placeholder="<|endoftext|>")
    assert summary["placeholder_check"]["placeholder_id"] == 0
