"""Reading problems: field mapping, reference-answer formats and the reasons bad rows are rejected."""

import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to

from schemas.config import ConfigError, InputConfig
from schemas.records import Problem
from transforms.read import DEAD, PROBLEMS, ReadProblems, check_input, input_format, problem_from_row


def cfg(**kw):
    return InputConfig(path=kw.pop("path", "x.jsonl"), **kw)


def test_gsm8k_and_math_answers_are_understood():
    p = problem_from_row({"question": "How many?", "answer": "He has 2+3=<<2+3=5>>5.\n#### 1,005"}, cfg(), "f:1")
    assert isinstance(p, Problem) and p.answer == "1005"
    p = problem_from_row(
        {"problem": "Find x.", "solution": "So $x=\\boxed{\\frac{1}{2}}$."},
        cfg(fields={"question": "problem", "answer": "solution"}),
        "f:2",
    )
    assert p.answer == "\\frac{1}{2}"
    p = problem_from_row({"question": "q", "answer": 42}, cfg(answer_format="plain"), "f:3")
    assert p.answer == "42"


def test_ids_are_stable_and_meta_keeps_other_columns():
    row = {"question": "q?", "answer": "#### 3", "level": 2}
    a = problem_from_row(row, cfg(), "f:1")
    b = problem_from_row(dict(row), cfg(), "other:9")
    assert a.problem_id == b.problem_id and len(a.problem_id) == 16
    assert a.meta == {"level": 2}
    c = problem_from_row({**row, "uid": "u-7"}, cfg(id_field="uid"), "f:1")
    assert c.problem_id == "u-7"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"answer": "#### 1"}, "missing field 'question'"),
        ({"question": "q", "answer": None}, "missing field 'answer'"),
        ({"question": "   ", "answer": "#### 1"}, "field 'question' (question) is empty"),
        ({"question": ["q"], "answer": "#### 1"}, "has type list"),
        ({"question": 5, "answer": "#### 1"}, "expected a string"),
        ({"question": "q", "answer": {"v": 1}}, "has type dict"),
        ({"question": "q" * 30, "answer": "#### 1"}, "row too large"),
        ([1, 2], "row is a list"),
    ],
)
def test_bad_rows_have_reasons(row, reason):
    result = problem_from_row(row, cfg(max_chars=20), "f:1")
    assert isinstance(result, str) and reason in result


def test_format_guessing(tmp_path):
    assert input_format(cfg(path="a/b.jsonl")) == "jsonl"
    assert input_format(cfg(path="gs://b/p/*.parquet")) == "parquet"

    with pytest.raises(ConfigError, match="input.format"):
        input_format(cfg(path="a/b.csv"))
    with pytest.raises(ConfigError, match="no file matches"):
        check_input(cfg(path=str(tmp_path / "none-*.jsonl")))


def test_jsonl_pipeline_routes_every_row(tmp_path):
    path = tmp_path / "in.jsonl"
    rows = [
        json.dumps({"id": "a", "question": "q1", "answer": "#### 1"}),
        "{not json",
        json.dumps({"id": "b", "question": "q2"}),
        "",
        json.dumps({"id": "a", "question": "q1 again", "answer": "#### 2"}),
        json.dumps({"id": "c", "question": "q3", "answer": "#### 3"}),
    ]
    path.write_text("\n".join(rows) + "\n")
    config = cfg(path=str(path), id_field="id")
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | ReadProblems(config)
        assert_that(out[PROBLEMS] | "ids" >> beam.Map(lambda pr: pr.problem_id), equal_to(["a", "c"]), label="problems")
        reasons = out[DEAD] | "why" >> beam.Map(lambda d: (d["source"].rsplit("/", 1)[-1], d["reason"][:20]))
        assert_that(
            reasons,
            equal_to(
                [
                    ("in.jsonl:2", "invalid JSON: Expect"),
                    ("in.jsonl:3", "missing field 'answe"),
                    ("in.jsonl:5", "duplicate problem_id"),
                ]
            ),
            label="dead",
        )


def test_parquet_and_limit(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"q": f"q{i}", "a": str(i)} for i in range(6)]), path)
    config = cfg(path=str(path), fields={"question": "q", "answer": "a"}, answer_format="plain", limit=4)
    p = beam.Pipeline(runner="FnApiRunner")
    out = p | ReadProblems(config)
    assert_that(out[PROBLEMS] | beam.combiners.Count.Globally(), equal_to([4]), label="kept")
    assert_that(out[DEAD], equal_to([]), label="dead")  # a limit is not an error: counted, not dead-lettered
    result = p.run()
    result.wait_until_finish()
    (beyond,) = result.metrics().query(MetricsFilter().with_name("beyond_limit"))["counters"]
    assert beyond.committed == 2


def test_datasets_folder(tmp_path):
    import datasets

    datasets.Dataset.from_list(
        [{"question": "q1", "answer": "#### 4"}, {"question": "", "answer": "#### 5"}]
    ).save_to_disk(str(tmp_path / "ds"))
    config = cfg(path=str(tmp_path / "ds"))
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | ReadProblems(config)
        assert_that(out[PROBLEMS] | beam.Map(lambda pr: pr.answer), equal_to(["4"]), label="kept")
        assert_that(
            out[DEAD] | "r" >> beam.Map(lambda d: d["reason"]),
            equal_to(["field 'question' (question) is empty"]),
            label="dead",
        )
