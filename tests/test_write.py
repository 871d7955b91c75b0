"""Deterministic hash-sharded Parquet and dead-letter files."""

import hashlib
import json

import apache_beam as beam
import pyarrow.parquet as pq

from schemas import tables
from transforms.write import WriteDeadLetters, WriteShards, shard_of


def _rows(n):
    return [
        {
            "problem_id": f"p{i}",
            "solution_index": i % 3,
            "step_index": 0,
            "completion_index": 0,
            "text": f"t{i}",
            "final_answer": str(i),
            "correct": i % 2 == 0,
            "verdict_reason": "x",
            "finish_reason": "stop",
            "n_tokens": i,
            "seed": i,
        }
        for i in range(n)
    ]


def _write(rows, out, shards, order):
    rows = rows if order == 0 else list(reversed(rows))
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = (
            p
            | beam.Create(rows)
            | WriteShards(str(out), tables.COMPLETIONS, key=lambda r: r["problem_id"], num_shards=shards)
        )


def _digest(folder):
    return {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in sorted(folder.glob("*.parquet"))}


def test_same_rows_same_bytes_whatever_the_input_order(tmp_path):
    rows = _rows(40)
    _write(rows, tmp_path / "a", 4, 0)
    _write(rows, tmp_path / "b", 4, 1)
    assert list(_digest(tmp_path / "a")) == [f"train-0000{i}-of-00004.parquet" for i in range(4)]
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    total = 0
    for path in sorted((tmp_path / "a").glob("*.parquet")):
        table = pq.read_table(path)
        assert table.schema.equals(tables.COMPLETIONS)
        ids = table.column("problem_id").to_pylist()
        assert ids == sorted(ids)
        shard = int(path.name[6:11])
        assert all(shard_of(i, 4) == shard for i in ids)
        total += table.num_rows
    assert total == 40
    assert (
        pq.ParquetFile(next((tmp_path / "a").glob("*.parquet"))).metadata.row_group(0).column(0).compression == "ZSTD"
    )


def test_empty_shards_are_written(tmp_path):
    _write(_rows(1), tmp_path, 3, 0)
    sizes = [pq.read_table(p).num_rows for p in sorted(tmp_path.glob("*.parquet"))]
    assert sorted(sizes) == [0, 0, 1]


def test_rewrite_overwrites_and_leaves_no_temp_files(tmp_path):
    _write(_rows(5), tmp_path, 2, 0)
    _write(_rows(3), tmp_path, 2, 0)
    assert sum(pq.read_table(p).num_rows for p in tmp_path.glob("*.parquet")) == 3
    assert not list(tmp_path.glob("*.tmp-*"))


def test_dead_letters_sorted_and_always_written(tmp_path):
    rows = [{"stage": "read", "source": f"f:{i}", "reason": "bad", "row": "{}"} for i in (3, 1, 2)]
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = p | beam.Create(rows) | WriteDeadLetters(str(tmp_path / "d" / "dl.jsonl"))
    lines = [json.loads(x) for x in (tmp_path / "d" / "dl.jsonl").read_text().splitlines()]
    assert [x["source"] for x in lines] == ["f:1", "f:2", "f:3"]
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = p | beam.Create([]) | WriteDeadLetters(str(tmp_path / "e.jsonl"))
    assert (tmp_path / "e.jsonl").read_text() == ""
