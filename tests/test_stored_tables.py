"""A finished run's files are data on disk: `annotate --from` and `verify` check them before they use them.

A truncated or retyped file stops the command with the file and the reason (exit 2, no traceback); a row that its
record cannot be built from makes its problem a dead letter at the `evidence` stage. The parent run here is
written by hand (no model): two problems, two solutions each, two completions per step.
"""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import run
from pipelines import annotate
from pipelines.manifest import write_manifest
from schemas import tables
from schemas.config import config_from_dict

PROBLEMS = ("p1", "p2")


def parent_config():
    return config_from_dict(
        {
            "input": {"path": "problems.jsonl", "answer_format": "plain"},
            "policy": {"model": "tiny"},
            "search": {"num_solutions": 2, "completions_per_step": 2},
        }
    )


def evidence() -> dict[str, list[dict]]:
    problems = [
        {"problem_id": p, "question": f"{p}?", "answer": "5", "domain": "math", "source": "in", "meta": "{}"}
        for p in PROBLEMS
    ]
    solutions, completions = [], []
    for p in PROBLEMS:
        for s in range(2):
            solutions.append(
                {"problem_id": p, "solution_index": s, "text": "ab", "steps": ["a", "b"], "step_ends": [1, 2],
                 "final_answer": str(4 + s), "outcome_correct": s == 1, "verdict_reason": "rational_equal",
                 "finish_reason": "stop", "n_tokens": 2, "seed": s}
            )  # fmt: skip
            for step in range(2):
                for c in range(2):
                    completions.append(
                        {"problem_id": p, "solution_index": s, "step_index": step, "completion_index": c,
                         "text": "x", "final_answer": "5", "correct": c == 0, "verdict_reason": "exact_match",
                         "finish_reason": "stop", "n_tokens": 1, "seed": c}
                    )  # fmt: skip
    return {"problems": problems, "solutions": solutions, "completions": completions}


def write_table(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def make_parent(root: Path, tables_in: dict[str, list[dict]] | None = None) -> Path:
    """A finished run folder holding `tables_in` as its evidence (default: `evidence()`) and a manifest."""
    config = parent_config()
    schemas = {"problems": tables.PROBLEMS, "solutions": tables.SOLUTIONS, "completions": tables.COMPLETIONS}
    for name, rows in (tables_in or evidence()).items():
        write_table(root / "evidence" / name / "part-00000-of-00001.parquet", rows, schemas[name])
    rows = [{"id": f"{p}/0", "problem_id": p, "source": "in", "prompt": f"{p}?", "completions": ["a", "b"],
             "labels": [True, False], "first_error_index": 1, "gold_answer": "5"} for p in PROBLEMS]  # fmt: skip
    write_table(root / "data" / "train-00000-of-00001.parquet", rows, tables.PATHS)
    (root / "dead_letters").mkdir(parents=True, exist_ok=True)
    (root / "dead_letters" / "dead_letters.jsonl").write_text("")
    write_manifest(str(root), config, {"read.rows_read": 2, "read.blank_lines": 3}, wall_seconds=1.0, command="x")
    return root


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "relabel.yaml"
    path.write_text(yaml.safe_dump(parent_config().to_dict()))
    return path


def test_a_clean_parent_relabels_and_its_counts_carry_over(tmp_path):
    parent = make_parent(tmp_path / "parent")
    manifest = annotate.run(str(parent), parent_config(), str(tmp_path / "relabel"))
    counts = manifest["counts"]
    assert counts["problems_labelled"] == 2 and counts["dead_lettered"] == 0 and counts["balanced"] is True
    assert counts["blank_lines"] == 3  # the parent's, as its rows read are


@pytest.mark.parametrize(
    ("table", "column", "values", "reason"),
    [
        ("solutions", "steps", ["x"] * 4, "column 'steps' has type string, expected list<item: large_string>"),
        ("solutions", "step_ends", [["a"]] * 4, "column 'step_ends' has type list<element: string>, expected"),
        ("completions", "text", None, "column 'text' is missing"),
        ("problems", "question", [1, 2], "column 'question' has type int64, expected large_string"),
    ],
)
def test_an_evidence_table_of_the_wrong_schema_stops_annotate(tmp_path, capsys, table, column, values, reason):
    rows = evidence()
    if values is None:
        rows[table] = [{k: v for k, v in row.items() if k != column} for row in rows[table]]
    else:
        rows[table] = [{**row, column: value} for row, value in zip(rows[table], values, strict=True)]
    parent = make_parent(tmp_path / "parent")
    path = parent / "evidence" / table / "part-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows[table]), path)  # its types as given, as another tool would write them
    code = run.main(["annotate", "--from", str(parent), "--config", str(config_file(tmp_path)),
                     "--output", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"annotate failed: {path}: {reason}"), err
    assert not list((tmp_path / "out").rglob("manifest.json"))


def test_a_truncated_evidence_file_stops_annotate_and_a_truncated_shard_stops_verify(tmp_path, capsys):
    parent = make_parent(tmp_path / "parent")
    path = parent / "evidence" / "problems" / "part-00000-of-00001.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    code = run.main(["annotate", "--from", str(parent), "--config", str(config_file(tmp_path))])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"annotate failed: {path}: not a readable Parquet file (Parquet magic bytes")

    shard = parent / "data" / "train-00000-of-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])
    code = run.main(["verify", str(parent), "--output", str(tmp_path / "verified")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"verify failed: {shard}: not a readable Parquet file (Parquet magic bytes")


def test_a_shard_of_the_wrong_schema_stops_verify(tmp_path, capsys):
    parent = make_parent(tmp_path / "parent")
    shard = parent / "data" / "train-00000-of-00001.parquet"
    pq.write_table(pa.table({"id": ["r"], "problem_id": ["p1"], "completions": [3]}), shard)
    code = run.main(["verify", str(parent), "--output", str(tmp_path / "verified")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"verify failed: {shard}: column 'source' is missing"), err


def test_a_row_its_record_cannot_be_built_from_is_an_evidence_dead_letter(tmp_path):
    rows = evidence()
    rows["solutions"][0]["text"] = None  # p1: a null text
    rows["solutions"][2]["step_ends"] = [1]  # p2: two steps, one end
    parent = make_parent(tmp_path / "parent", rows)
    manifest = annotate.run(str(parent), parent_config(), str(tmp_path / "relabel"))
    letters = [json.loads(line) for line in (tmp_path / "relabel" / "dead_letters" / "dead_letters.jsonl").open()]
    assert [(d["stage"], d["reason"]) for d in letters] == [
        (
            "evidence",
            "evidence failed: ValueError: solutions row of problem 'p1', solution_index 0: column 'text' is null",
        ),
        (
            "evidence",
            "evidence failed: ValueError: solutions row of problem 'p2', solution_index 0: 2 steps but 1 step ends",
        ),
    ]
    assert sorted(json.loads(d["row"])["problem_id"] for d in letters) == ["p1", "p2"]  # the problems, whole
    counts = manifest["counts"]
    assert counts["problems_labelled"] == 0 and counts["problems_dead_lettered"] == 2 and counts["balanced"] is True


def test_schema_mismatch_reads_alike_types_as_alike():
    found = pa.schema([("a", pa.int32()), ("b", pa.large_list(pa.string())), ("extra", pa.bool_())])
    assert tables.schema_mismatch(found, pa.schema([("a", pa.int64()), ("b", pa.list_(pa.large_string()))])) is None
    assert tables.schema_mismatch(found, pa.schema([("a", pa.string())])) == (
        "column 'a' has type int32, expected string"
    )
    twice = pa.schema([("a", pa.int32()), ("a", pa.int32())])
    assert tables.schema_mismatch(twice, pa.schema([("a", pa.int32())])) == "column 'a' appears 2 times"
    assert tables.missing_values({"s": ["x", None]}, ["s"]) == "column 's' holds a null at 1"
