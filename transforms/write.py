"""Deterministic, hash-sharded Parquet in the Hub layout, and dead letters as JSONL.

Rows go to shard `int(sha256(key)[:8], 16) % N`, are sorted by key inside the shard and written to a temp
file that is renamed onto `data/train-00000-of-0000N.parquet`: the same rows give the same bytes, and a
retried bundle overwrites with identical content (docs/infrastructure.md §3.2).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from schemas.tables import table_bytes
from storage import atomic_write
from transforms.dead_letters import contain, contain_group
from transforms.progress import PROGRESS
from transforms.read import DEAD


def shard_of(key: str, num_shards: int) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % num_shards


def shard_name(directory: str, prefix: str, shard: int, num_shards: int, suffix: str = ".parquet") -> str:
    return FileSystems.join(directory, f"{prefix}-{shard:05d}-of-{num_shards:05d}{suffix}")


class WriteShards(beam.PTransform):
    """Rows -> `directory/prefix-SSSSS-of-NNNNN.parquet`; every shard is written, empty ones included."""

    def __init__(
        self,
        directory: str,
        schema: pa.Schema,
        key: Callable[[dict[str, Any]], str],
        num_shards: int = 1,
        prefix: str = "train",
        compression: str = "zstd",
        row_group_size: int = 1000,
    ):
        super().__init__()
        self.directory = directory
        self.schema = schema
        self.key = key
        self.num_shards = num_shards
        self.prefix = prefix
        self.compression = compression
        self.row_group_size = row_group_size

    def expand(self, rows: beam.PCollection) -> dict[str, beam.PCollection]:
        """{"written": one record per shard file, dead_letters: rows that could not be written}."""
        keyed = rows | "Key rows by shard" >> beam.FlatMap(self._keyed).with_outputs(DEAD, main="keyed")
        empty = rows.pipeline | "Every shard" >> beam.Create([(s, None) for s in range(self.num_shards)])
        written = (
            (keyed["keyed"], empty)
            | "Merge shard markers" >> beam.Flatten()
            | "Group shards" >> beam.GroupByKey()
            | "Write shard" >> beam.FlatMap(self._write).with_outputs(DEAD, main="written")
        )
        dead = (keyed[DEAD], written[DEAD]) | "Merge write dead letters" >> beam.Flatten()
        return {"written": written["written"], DEAD: dead}

    def _keyed(self, row: dict[str, Any]) -> Iterator[Any]:
        yield from contain("write", lambda: [(shard_of(self.key(row), self.num_shards), row)], *_source_row(row))

    def _bytes(self, rows: list[dict[str, Any]]) -> bytes:
        return table_bytes(rows, self.schema, self.compression, self.row_group_size)

    def _write(self, item: tuple[int, list[dict[str, Any] | None]]) -> Iterator[Any]:
        shard, group = item
        rows = sorted(
            (r for r in group if r is not None),
            key=lambda r: (self.key(r), json.dumps(r, sort_keys=True, default=str)),
        )
        # A row that does not fit the schema is a dead letter; the shard is written with the others.
        payload, written, dead = contain_group("write", rows, self._bytes, lambda r: self._bytes([r]), _source_row)
        for letter in dead:
            yield beam.pvalue.TaggedOutput(DEAD, letter)
        path = shard_name(self.directory, self.prefix, shard, self.num_shards)
        atomic_write(path, payload if payload is not None else self._bytes([]))
        if self.prefix == "train":
            PROGRESS.update("rows written", len(written), unit="rows")
        yield {"path": path, "rows": len(written)}


def _source_row(row: dict[str, Any]) -> tuple[str, Any]:
    """(source, row) of a row's dead letter: labelled paths name their source, evidence rows do not."""
    return str(row.get("source") or "") if isinstance(row, dict) else "", row


def dead_letter_sort_key(row: dict[str, str]) -> tuple[str, ...]:
    return (row["stage"], row["source"], row["reason"], row["row"])


class WriteDeadLetters(beam.PTransform):
    """Dead letters -> one sorted JSONL file (always written, possibly empty)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def expand(self, dead: beam.PCollection) -> beam.PCollection:
        marker = dead.pipeline | "Dead-letter marker" >> beam.Create([None])
        return (
            (dead, marker)
            | "Merge dead-letter marker" >> beam.Flatten()
            | "One dead-letter file" >> beam.Map(lambda row: (0, row))
            | "Group dead letters" >> beam.GroupByKey()
            | "Write dead letters" >> beam.Map(self._write)
        )

    def _write(self, item: tuple[int, list[dict[str, str] | None]]) -> dict[str, Any]:
        rows = sorted((r for r in item[1] if r is not None), key=dead_letter_sort_key)
        for row in rows:  # dead letters by reason, as Beam metrics (the Dataflow UI shows them)
            Metrics.counter("dead_letters", row["reason"].split(":")[0][:60]).inc()
        payload = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows).encode()
        atomic_write(self.path, payload)
        return {"path": self.path, "rows": len(rows)}
