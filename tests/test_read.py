"""Reading problems: field mapping, reference-answer formats and the reasons bad rows are rejected."""

import io
import itertools
import json
import random
import sys

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io import fileio
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to

from schemas.config import ConfigError, InputConfig
from schemas.records import Problem
from transforms.read import (
    DEAD,
    MAX_ROW_BYTES,
    PREVIEW_CHARS,
    PROBLEMS,
    BadRow,
    LineReader,
    ReadProblems,
    check_input,
    dead_letter,
    input_format,
    json_too_deep,
    parse_json_row,
    problem_from_row,
)


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


def test_duplicates_keep_the_first_row_by_line_number(tmp_path):
    path = tmp_path / "in.jsonl"
    rows = [{"id": "a" if n in (2, 10) else f"r{n}", "question": f"q{n}", "answer": f"#### {n}"} for n in range(1, 12)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | ReadProblems(cfg(path=str(path), id_field="id"))
        kept = out[PROBLEMS] | beam.Filter(lambda pr: pr.problem_id == "a") | beam.Map(lambda pr: pr.question)
        assert_that(kept, equal_to(["q2"]), label="kept")
        reasons = out[DEAD] | beam.Map(lambda d: (d["source"].rsplit("/", 1)[1], d["reason"].rsplit("/", 1)[1]))
        assert_that(reasons, equal_to([("in.jsonl:10", "in.jsonl:2)")]), label="dead")


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


# ---------------------------------------------------------------- hostile input: no row can stop the run

GOOD_ROWS = [
    {"question": "How many?", "answer": "He has 2+3=<<2+3=5>>5.\n#### 5", "level": 1},
    {"question": "Café ½ ∑ 🙂?", "answer": "#### 1,005", "tags": {"a": [1, [2, {"b": None}]]}},
    {"question": "q3", "answer": "#### 3", "meta_text": "brackets in text: " + "[" * 500},
    {"question": "q4", "answer": "#### 4", "n": 10**300, "x": 1.5e300},
]

# (name, line bytes, reason the dead letter must give); each is one line of a JSONL file
POISONED = [
    ("deep list", b"[" * 100_000 + b"]" * 100_000, "row too deep: JSON nested deeper than 64 levels"),
    ("deep question", b'{"question": ' + b"[" * 100_000 + b"]" * 100_000 + b', "answer": "#### 1"}', "row too deep"),
    ("unclosed brackets", b'{"question": ' + b"[" * 100_000, "row too deep"),
    ("deep meta", b'{"question": "q", "answer": "#### 1", "m": ' + b"{" * 5_000 + b"}" * 5_000 + b"}", "row too deep"),
    ("invalid UTF-8", b'{"question": "caf\xe9", "answer": "#### 1"}', "invalid UTF-8: bytes e9 22 2c 20 at offset 17"),
    ("UTF-8 of a surrogate", b'{"question": "\xed\xa0\x80", "answer": "#### 1"}', "invalid UTF-8"),
    ("escaped lone surrogate", b'{"question": "a\\ud800", "answer": "#### 1"}', "invalid Unicode: field 'question'"),
    ("lone surrogate in meta", b'{"question": "q", "answer": "#### 1", "x": "\\udfff"}', "invalid Unicode: a column"),
    ("escaped NUL", b'{"question": "a\\u0000b", "answer": "#### 1"}', "holds a NUL character"),
    ("raw NUL", b'{"question": "a\x00b", "answer": "#### 1"}', "invalid JSON: Invalid control character"),
    ("NUL line", b"\x00" * 10, "invalid JSON"),
    ("huge float", b'{"question": "q", "answer": 1e999999}', "field 'answer' (answer) is inf, not a finite number"),
    ("NaN", b'{"question": "q", "answer": NaN}', "is nan, not a finite number"),
    ("100000-digit integer", b'{"question": "q", "answer": ' + b"7" * 100_000 + b"}", "an integer longer than"),
    ("non-object: list", b"[1, 2]", "row is a list, not an object"),
    ("non-object: string", b'"just text"', "row is a str, not an object"),
    ("non-object: null", b"null", "row is a NoneType, not an object"),
    ("truncated JSON", b'{"question": "q", "answer": "#', "invalid JSON: Unterminated string"),
    ("question is an object", b'{"question": {"text": "q"}, "answer": "#### 1"}', "has type dict"),
    ("domain is a list", b'{"question": "q", "answer": "#### 1", "domain": ["math"]}', "field 'domain' has type list"),
]


def read_row(line: bytes, config: InputConfig | None = None):
    """What the reader makes of one JSONL line: a Problem or the dead letter's reason."""
    try:
        row = parse_json_row(line)
    except BadRow as error:
        return str(error)
    return problem_from_row(row, config or cfg(), "f.jsonl:1")


@pytest.mark.parametrize(("name", "line", "reason"), POISONED, ids=[p[0] for p in POISONED])
def test_poisoned_line_gives_a_reason(name, line, reason):
    result = read_row(line)
    assert isinstance(result, str) and reason in result, result


def test_id_field_must_be_a_scalar():
    line = b'{"uid": ' + b"[" * 60 + b"]" * 60 + b', "question": "q", "answer": "#### 1"}'
    assert read_row(line, cfg(id_field="uid")) == "id field 'uid' has type list, expected a string or a number"
    assert read_row(b'{"uid": 7, "question": "q", "answer": "#### 1"}', cfg(id_field="uid")).problem_id == "7"
    assert read_row(b'{"uid": -1e999, "question": "q", "answer": "#### 1"}', cfg(id_field="uid")) == (
        "id field 'uid' is -inf, not a finite number"
    )


def test_depth_is_measured_without_parsing():
    assert not json_too_deep("[" * 64 + "]" * 64) and json_too_deep("[" * 65 + "]" * 65)
    assert json_too_deep("{" * 65)  # unclosed brackets count: json.loads would recurse into them
    assert not json_too_deep('["' + "[" * 1_000 + '"]')  # inside a string they do not
    assert not json_too_deep('["\\"' + "[" * 1_000 + '"]')  # nor after an escaped quote
    assert json_too_deep('["\\\\"' + ", [" * 65 + "]" * 65 + "]")  # an escaped backslash ends the string


def test_dead_letter_never_raises_and_is_valid_unicode():
    deep: list = []
    for _ in range(5_000):
        deep = [deep]
    letter = dead_letter("read", "f:1", "reason \ud800", {"rows": deep, 1: "mixed keys", "a": "b"})
    assert letter["row"].startswith("<dict that cannot be serialised")
    assert letter["reason"] == "reason \\ud800"
    letter = dead_letter("read", "f:1", "r", {2: "x", "b": "\udfff"})  # keys that do not sort
    assert letter["row"] == '{"2": "x", "b": "\\udfff"}'  # still JSON for the same value, and encodable
    for value in letter.values():
        value.encode("utf-8")


def test_line_reader_keeps_memory_bounded():
    data = b"a\n" + b"x" * 5_000_000 + b"\r\nb\n\n" + b"y" * 11
    reader = LineReader(io.BytesIO(data), max_line_bytes=10)
    lines = list(reader)
    assert [(number, size) for number, _, size in lines] == [(1, 1), (2, 5_000_001), (3, 1), (5, 11)]
    assert lines[1][1] == b"x" * PREVIEW_CHARS and lines[3][1] == b"y" * 11  # cut to a preview, not kept whole
    assert reader.blank_lines == 1 and reader.unread is None


def write_jsonl(path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")


def run_read(config: InputConfig, out_dir) -> tuple[list[str], list[dict]]:
    """Problems (as canonical JSON, sorted) and dead letters of one ReadProblems run on the local runner."""
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | ReadProblems(config)
        problems = out[PROBLEMS] | "P" >> beam.Map(lambda pr: json.dumps(pr.to_dict(), sort_keys=True))
        problems | "Write P" >> beam.io.WriteToText(str(out_dir / "problems"), shard_name_template="")
        dead = out[DEAD] | "D" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
        dead | "Write D" >> beam.io.WriteToText(str(out_dir / "dead"), shard_name_template="")
    problems = sorted((out_dir / "problems").read_text(encoding="utf-8").splitlines())
    dead = [json.loads(line) for line in (out_dir / "dead").read_text(encoding="utf-8").splitlines()]
    return problems, dead


def test_fault_injection_every_poisoned_row_is_a_dead_letter(tmp_path):
    oversized = b'{"question": "' + b"q" * MAX_ROW_BYTES + b'", "answer": "#### 1"}'
    poisoned = [*POISONED, ("oversized line", oversized, f"row too large: {len(oversized)} bytes > {MAX_ROW_BYTES}")]
    lines: list[bytes] = []
    expected: dict[int, str] = {}
    for index, (_, line, reason) in enumerate(poisoned):
        good = GOOD_ROWS[index % len(GOOD_ROWS)]
        good = {**good, "question": f"{good['question']} #{index}"}
        lines += [json.dumps(good, ensure_ascii=False).encode("utf-8"), line]
        expected[len(lines)] = reason
    clean_lines = [line for number, line in enumerate(lines, start=1) if number not in expected]
    # the same file name in two folders: a problem's source is the file name, so good rows must match exactly
    write_jsonl(tmp_path / "clean" / "in.jsonl", clean_lines)
    write_jsonl(tmp_path / "poisoned" / "in.jsonl", lines)

    clean_problems, clean_dead = run_read(cfg(path=str(tmp_path / "clean" / "in.jsonl")), tmp_path / "c")
    problems, dead = run_read(cfg(path=str(tmp_path / "poisoned" / "in.jsonl")), tmp_path / "p")

    assert clean_dead == [] and len(clean_problems) == len(clean_lines)
    assert problems == clean_problems  # byte-identical problems, in canonical JSON
    assert {d["stage"] for d in dead} == {"read"}
    got = {int(d["source"].rsplit(":", 1)[1]): d for d in dead}
    assert sorted(got) == sorted(expected)
    for number, reason in expected.items():
        assert reason in got[number]["reason"], (number, got[number]["reason"])
        assert got[number]["source"] == f"{tmp_path / 'poisoned' / 'in.jsonl'}:{number}"
    oversized_letter = got[max(expected)]
    assert len(oversized_letter["row"]) < 2 * PREVIEW_CHARS  # a preview, not 8 MiB
    assert got[next(n for n, r in expected.items() if r.startswith("invalid UTF-8: bytes e9"))]["row"] == (
        '{"question": "caf\\xe9", "answer": "#### 1"}'  # the line as read, the bad byte written out
    )


def test_parquet_rows_that_arrow_cannot_convert_are_dead_letters(tmp_path):
    # `view` skips Arrow's UTF-8 validation, as a hostile or broken writer would
    question = pa.array([b"q0", b"\xff\xfe", b"q2"], type=pa.binary()).view(pa.string())
    nested: object = 1
    for _ in range(40):
        nested = [nested]
    table = pa.table(
        {
            "question": question,
            "answer": ["1", "2", "3"],
            "struct": [{"x": [1, 2], "y": {"z": "w"}}] * 3,
            "map": pa.array([[(1, "a")]] * 3, type=pa.map_(pa.int32(), pa.string())),
            "binary": [b"\x00\x01"] * 3,
            "nested": [nested] * 3,
        }
    )
    path = tmp_path / "odd.parquet"
    pq.write_table(table, path)
    problems, dead = run_read(cfg(path=str(path), answer_format="plain"), tmp_path / "out")
    assert [json.loads(p)["question"] for p in problems] == ["q0", "q2"]
    meta = json.loads(problems[0])["meta"]
    assert meta["struct"] == {"x": [1, 2], "y": {"z": "w"}} and meta["map"] == [[1, "a"]]
    assert meta["binary"] == "b'\\x00\\x01'" and json.loads(problems[0])["source"] == "odd.parquet"
    assert [(d["source"].rsplit("/", 1)[1], d["reason"].split(":")[0]) for d in dead] == [
        ("odd.parquet#1", "unreadable Parquet row")
    ]


def test_parquet_row_too_deep_or_too_large_is_a_dead_letter():
    nested: object = 1
    for _ in range(70):
        nested = [nested]
    row = {"question": "q", "answer": "1", "nested": nested}
    assert problem_from_row(row, cfg(answer_format="plain"), "f.parquet#0") == (
        "row too deep: other columns nest deeper than 64 levels"
    )
    row = {"question": "q", "answer": "1", "blob": "x" * 100}
    reason = problem_from_row(row, cfg(answer_format="plain"), "f.parquet#0", max_row_bytes=50)
    assert reason == "row too large: other columns take 112 bytes > 50 (the reader's row size limit)"


# ---------------------------------------------------------------- whole files: folders, read errors, bombs


def read_counted(config: InputConfig, out_dir, **limits) -> tuple[list[str], list[dict], dict[str, int]]:
    """`run_read` plus the reader's counters (rows_read, blank_lines)."""
    p = beam.Pipeline(runner="FnApiRunner")
    out = p | ReadProblems(config, **limits)
    problems = out[PROBLEMS] | "P" >> beam.Map(lambda pr: json.dumps(pr.to_dict(), sort_keys=True))
    problems | "Write P" >> beam.io.WriteToText(str(out_dir / "problems"), shard_name_template="")
    dead = out[DEAD] | "D" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
    dead | "Write D" >> beam.io.WriteToText(str(out_dir / "dead"), shard_name_template="")
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(MetricsFilter())["counters"]}
    problems = sorted((out_dir / "problems").read_text(encoding="utf-8").splitlines())
    dead = [json.loads(line) for line in (out_dir / "dead").read_text(encoding="utf-8").splitlines()]
    return problems, dead, counters


def test_a_folder_is_refused_before_the_run_and_is_a_dead_letter_inside_it(tmp_path, capsys):
    import run

    folder = tmp_path / "x.jsonl"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder, not a jsonl file"):
        check_input(cfg(path=str(folder)))
    code = run.main(["synthesize", "--config", "configs/demo.yaml", "--output", str(tmp_path / "out"),
                     "--set", f"input.path={folder}"])  # fmt: skip
    assert code == 2 and "is a folder" in capsys.readouterr().err
    # a folder that reaches the reader anyway (matched after the check) is one dead letter, not a crash
    problems, dead, counters = read_counted(cfg(path=str(folder)), tmp_path / "o")
    assert problems == [] and counters["rows_read"] == 1
    assert [(d["stage"], d["reason"].split(": ")[:2]) for d in dead] == [
        ("read", ["unreadable file", "IsADirectoryError"])
    ]


def test_a_read_error_midway_makes_the_rest_of_the_file_one_dead_letter(tmp_path):
    import gzip

    noise = random.Random(0)
    rows = [b'{"question": "%x", "answer": "#### %d"}\n' % (noise.getrandbits(256), i) for i in range(3_000)]
    packed = gzip.compress(b"".join(rows))
    (tmp_path / "in.jsonl.gz").write_bytes(packed[: len(packed) // 2])  # cut inside the stream
    problems, dead, counters = read_counted(cfg(path=str(tmp_path / "in.jsonl.gz")), tmp_path / "o")
    assert 0 < len(problems) < len(rows) and counters["rows_read"] == len(problems) + 1
    (letter,) = dead
    assert letter["reason"] == (
        "unreadable file: EOFError: Compressed file ended before the end-of-stream marker was reached;"
        f" lines {len(problems) + 1} on are not read"
    )


def test_blank_lines_are_skipped_a_run_at_a_time_and_counted():
    data = b'{"a": 1}\n' + b"\n" * 100_000 + b" \t\r\n" * 1_000 + b"  " + b'{"b": 2}\n \n'
    reader = LineReader(io.BytesIO(data))
    passes = 0

    def trace(frame, event, arg):
        nonlocal passes
        if frame.f_code is LineReader.__iter__.__code__:
            passes += event == "line"
            return trace
        return None

    sys.settrace(trace)
    try:
        lines = list(reader)
    finally:
        sys.settrace(None)
    assert [(number, line) for number, line, _ in lines] == [(1, b'{"a": 1}'), (101_002, b'  {"b": 2}')]
    assert reader.blank_lines == 101_001
    assert passes < 200  # a few loop passes per run of blank lines, not one per line


def test_a_gzip_of_newlines_is_cut_at_its_decode_budget_in_bounded_memory(tmp_path):
    import gzip
    import tracemalloc

    from apache_beam.io.filesystems import FileSystems

    from transforms.read import EXPANSION_FLOOR, open_decoded

    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(b'{"question": "q", "answer": "#### 1"}\n')
        for _ in range(EXPANSION_FLOOR // (1 << 20) + 8):
            handle.write(b"\n" * (1 << 20))
    assert path.stat().st_size * 100 < EXPANSION_FLOOR  # a bomb: the floor is its budget
    (metadata,) = FileSystems.match([str(path)])[0].metadata_list
    tracemalloc.start()
    try:
        with open_decoded(fileio.ReadableFile(metadata)) as handle:
            reader = LineReader(handle, max_bytes=EXPANSION_FLOOR)
            assert len(list(reader)) == 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20  # a chunk at a time; Beam's own reader inflates the whole stream in one call
    assert reader.bytes_read == EXPANSION_FLOOR and reader.unread.reason.startswith("file too large")

    problems, dead, counters = read_counted(cfg(path=str(path)), tmp_path / "o")
    assert len(problems) == 1 and counters["rows_read"] == 2
    assert counters["blank_lines"] == EXPANSION_FLOOR - len(b'{"question": "q", "answer": "#### 1"}\n')
    (letter,) = dead
    assert letter["reason"] == (
        f"file too large: decodes to more than {EXPANSION_FLOOR} bytes (a file of {path.stat().st_size} stored bytes"
        f" may decode to {EXPANSION_FLOOR}); lines {counters['blank_lines'] + 2} on are not read"
    )


def test_max_file_bytes_cuts_a_plain_file_and_can_be_set(tmp_path):
    lines = [json.dumps({"question": f"q{i}", "answer": f"#### {i}"}).encode() for i in range(10)]
    write_jsonl(tmp_path / "in.jsonl", lines)
    problems, dead, counters = read_counted(cfg(path=str(tmp_path / "in.jsonl"), max_file_bytes=100), tmp_path / "a")
    assert len(problems) == 100 // (len(lines[0]) + 1) and counters["rows_read"] == len(problems) + 1
    assert [d["reason"].split(" (", 1)[1] for d in dead] == [
        f"input.max_file_bytes); lines {len(problems) + 1} on are not read"
    ]
    problems, dead, _ = read_counted(cfg(path=str(tmp_path / "in.jsonl")), tmp_path / "b", max_file_bytes=10**6)
    assert len(problems) == 10 and dead == []
    with pytest.raises(ValueError, match="max_file_bytes must be positive"):
        ReadProblems(cfg(), max_file_bytes=0)


def parquet_bomb(path, rows: int, value_bytes: int) -> None:
    """`rows` rows sharing one dictionary string of `value_bytes`: a few KiB on disk, rows x value_bytes decoded."""
    blob = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array(["a" * value_bytes]))
    table = pa.table({"problem_id": [f"p{i}" for i in range(rows)], "question": ["q"] * rows,
                      "answer": ["2"] * rows, "blob": blob})  # fmt: skip
    pq.write_table(table, path, compression="zstd")


def test_a_parquet_dictionary_bomb_is_measured_before_it_is_expanded(tmp_path):
    import tracemalloc

    from transforms.read import EXPANSION_FLOOR, ParquetRows, decode_budget

    path = tmp_path / "bomb.parquet"
    parquet_bomb(path, rows=512, value_bytes=256 << 10)  # 128 MiB decoded
    stored = path.stat().st_size
    budget = decode_budget(stored)
    assert stored < 64 << 10 and budget == EXPANSION_FLOOR
    arrow_peak = 0
    tracemalloc.start()
    try:
        with open(path, "rb") as handle:
            reader = ParquetRows(handle, max_bytes=budget)
            for _ in reader:
                arrow_peak = max(arrow_peak, pa.total_allocated_bytes())
        python_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Arrow holds the dictionary once, Python at most a slice of rows: the old 1,024-row batch held all 128 MiB
    assert arrow_peak < 16 << 20 and python_peak < 32 << 20, (arrow_peak, python_peak)
    # each string counts its bytes and a 4-byte offset: id, question, answer, blob
    sizes = [len(f"p{i}") + 4 + 1 + 4 + 1 + 4 + (256 << 10) + 4 for i in range(512)]
    assert reader.unread.position == sum(1 for total in itertools.accumulate(sizes) if total <= budget)
    assert reader.decoded <= budget and reader.unread.reason.startswith("file too large: decodes to more than")

    config = cfg(path=str(path), id_field="problem_id", answer_format="plain")
    problems, dead, counters = read_counted(config, tmp_path / "o")
    assert len(problems) == reader.unread.position and counters["rows_read"] == len(problems) + 1
    assert [(d["source"], d["reason"].split(";")[1]) for d in dead] == [
        (str(path), f" rows {len(problems)} on are not read")
    ]
    # a row over the row limit is refused from its measured size, without becoming Python
    with open(path, "rb") as handle:
        rows = list(ParquetRows(handle, max_row_bytes=100_000, max_bytes=budget))
    assert {str(row) for _, row in rows} == {
        f"row too large: {size} bytes decoded > 100000 (the reader's row size limit)" for size in sizes[: len(rows)]
    }


def test_a_parquet_row_group_too_large_to_decode_is_not_read(tmp_path):
    path = tmp_path / "plain.parquet"
    blob = pa.array(["b" * (1 << 20)] * 24)  # 24 MiB, compressed to a few KiB without a dictionary
    pq.write_table(pa.table({"question": ["q"] * 24, "answer": ["1"] * 24, "blob": blob}), path,
                   compression="zstd", use_dictionary=False)  # fmt: skip
    del blob
    problems, dead, counters = read_counted(cfg(path=str(path), answer_format="plain"), tmp_path / "o")
    assert problems == [] and counters["rows_read"] == 1
    (letter,) = dead
    assert letter["reason"].startswith("file too large: row group 0 declares ")
    assert letter["reason"].endswith(
        f"past {16 << 20} (a file of {path.stat().st_size} stored bytes may decode to 16777216)"
    )


def test_a_gold_no_answer_can_be_graded_against_in_time_is_a_dead_letter_once(tmp_path):
    from annotators.answers import GOLD_CHECK_TIMEOUT_S

    reason = f"gold undecidable: Math-Verify cannot compare it with a number within {GOLD_CHECK_TIMEOUT_S} s"
    tower = {"question": "How big?", "answer": "(2^64)^(2^64)"}
    assert problem_from_row(tower, cfg(answer_format="plain"), "f:1") == reason
    # in the pipeline Math-Verify runs in the grader's worker process: the same verdict, once per problem
    rows = [tower, {"question": "Simplify.", "answer": "\\frac{\\sqrt{3}}{2}"}, {"question": "n?", "answer": "12"}]
    write_jsonl(tmp_path / "in.jsonl", [json.dumps(row).encode() for row in rows])
    problems, dead = run_read(cfg(path=str(tmp_path / "in.jsonl"), answer_format="plain"), tmp_path / "o")
    assert sorted(json.loads(p)["answer"] for p in problems) == ["12", "\\frac{\\sqrt{3}}{2}"]
    assert [(d["source"].rsplit("/", 1)[1], d["reason"]) for d in dead] == [("in.jsonl:1", reason)]
