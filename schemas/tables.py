"""Explicit Arrow schemas of every table StepForge writes, with the schema version.

One explicit schema per table keeps every shard identical in type, so `datasets` never meets schema drift
between files (docs/infrastructure.md §5). The labelled-path table follows docs/methods.md §3.6.

A stored table is read back only after `schema_mismatch` finds its columns where the schema puts them (a table
rewritten by hand or by another tool fails with the file and column named, `TableError`), and each row only after
`missing_values` finds the values its record cannot do without.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


class TableError(ValueError):
    """A stored table that cannot be read as its schema; the message starts with the file."""


SCHEMA_VERSION = "1"

_verdict_list = pa.list_(pa.bool_())

PROBLEMS = pa.schema(
    [
        ("problem_id", pa.string()),
        ("question", pa.large_string()),
        ("answer", pa.string()),
        ("domain", pa.string()),
        ("source", pa.string()),
        ("meta", pa.large_string()),  # JSON
    ]
)

SOLUTIONS = pa.schema(
    [
        ("problem_id", pa.string()),
        ("solution_index", pa.int32()),
        ("text", pa.large_string()),
        ("steps", pa.list_(pa.large_string())),
        ("step_ends", pa.list_(pa.int32())),
        ("final_answer", pa.string()),
        ("outcome_correct", pa.bool_()),
        ("verdict_reason", pa.string()),
        ("finish_reason", pa.string()),
        ("n_tokens", pa.int32()),
        ("seed", pa.int64()),
    ]
)

COMPLETIONS = pa.schema(
    [
        ("problem_id", pa.string()),
        ("solution_index", pa.int32()),
        ("step_index", pa.int32()),
        ("completion_index", pa.int32()),
        ("text", pa.large_string()),
        ("final_answer", pa.string()),
        ("correct", pa.bool_()),
        ("verdict_reason", pa.string()),
        ("finish_reason", pa.string()),
        ("n_tokens", pa.int32()),
        ("seed", pa.int64()),
    ]
)

# One graded rollout of an OmegaPRM state (a node's `rollouts`, the search result's pre-filter samples).
OMEGAPRM_ROLLOUT = pa.struct(
    [
        ("text", pa.large_string()),
        ("correct", pa.bool_()),
        ("extracted", pa.string()),
        ("verdict_reason", pa.string()),
        ("n_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("selected", pa.bool_()),
        ("seed", pa.int64()),
    ]
)

# OmegaPRM's lossless search graph (the evidence table `omegaprm_nodes`, rows from annotators/omegaprm_rows.py).
OMEGAPRM_NODES = pa.schema(
    [
        ("problem_id", pa.string()),
        ("node_id", pa.int32()),
        ("parent_id", pa.int32()),  # the parent it was first reached through; null for the root
        ("edges", pa.list_(pa.struct([("parent_id", pa.int32()), ("single_step", pa.bool_())]))),  # all in-edges
        ("prefix", pa.large_string()),  # solution text after the prompt; parent.prefix + action == prefix
        ("action", pa.large_string()),
        ("action_tokens", pa.int32()),  # null when unknown (step cut without a tokenizer)
        ("single_step", pa.bool_()),
        ("steps", pa.list_(pa.large_string())),
        ("step_ends", pa.list_(pa.int32())),  # prefix[:step_ends[t]] is the prefix through step t
        ("mc", pa.float32()),
        ("mc_source", pa.string()),  # monte_carlo | terminal_answer
        ("n_correct", pa.int32()),
        ("n_rollouts", pa.int32()),
        ("visits", pa.int32()),
        ("final_answer", pa.string()),  # terminal states only
        ("request_key", pa.string()),
        ("seed", pa.int64()),
        ("rollouts", pa.list_(OMEGAPRM_ROLLOUT)),
    ]
)

# One row per labelled solution; `prompt`/`completions`/`labels` are TRL's stepwise-supervision columns.
PATHS = pa.schema(
    [
        ("id", pa.string()),
        ("problem_id", pa.string()),
        ("source", pa.string()),
        ("prompt", pa.large_string()),
        ("completions", pa.list_(pa.large_string())),
        ("labels", _verdict_list),
        ("mc_values", pa.list_(pa.float32())),
        ("n_correct", pa.list_(pa.int32())),
        ("n_rollouts", pa.list_(pa.int32())),
        ("label_policy", pa.string()),
        ("first_error_index", pa.int32()),  # -1 when every step is labelled correct
        ("truncated_after_first_error", pa.bool_()),
        ("is_terminal", pa.bool_()),
        ("final_answer", pa.string()),
        ("outcome_correct", pa.bool_()),
        ("gold_answer", pa.string()),
        ("policy_model", pa.string()),
        ("search", pa.string()),
        ("seed", pa.int64()),
        ("config_hash", pa.string()),
        ("schema_version", pa.string()),
        ("meta", pa.large_string()),  # JSON: seeds, search stats, verifier reasons, merges
    ]
)

# The generation cache: one row per sample, keyed by content (engines/cache.py).
CACHE = pa.schema(
    [
        ("key", pa.string()),
        ("problem_id", pa.string()),
        ("text", pa.large_string()),
        ("finish_reason", pa.string()),
        ("n_tokens", pa.int32()),
        ("prompt_tokens", pa.int32()),
        ("seed", pa.int64()),
    ]
)

CRITIQUES = pa.schema(
    [
        ("problem_id", pa.string()),
        ("path_id", pa.string()),
        ("critique_index", pa.int32()),
        ("text", pa.large_string()),
        ("parsed", pa.int32()),
        ("parser", pa.string()),
    ]
)

VERDICTS = pa.schema(
    [
        ("problem_id", pa.string()),
        ("path_id", pa.string()),
        ("annotator", pa.string()),
        ("step_index", pa.int32()),
        ("verdict", pa.bool_()),
        ("reason", pa.string()),
    ]
)

DEAD_LETTERS = pa.schema(
    [
        ("stage", pa.string()),
        ("source", pa.string()),
        ("reason", pa.string()),
        ("row", pa.large_string()),
    ]
)


@dataclass(frozen=True)
class Column:
    """A column an annotator adds to the labelled-path table; `kind` names its Arrow type (`COLUMN_TYPES`)."""

    name: str
    kind: str  # bools | strings | int | floats


# One Arrow type per column kind: per-step verdicts (null = cannot check), reasons, an index, per-step values.
COLUMN_TYPES = {
    "bools": pa.list_(pa.bool_()),
    "strings": pa.list_(pa.string()),
    "int": pa.int32(),
    "floats": pa.list_(pa.float32()),
}


def paths_schema(added: Sequence[Column] = ()) -> pa.Schema:
    """The labelled-path schema plus the columns the configured annotators declare
    (`annotators.labelling.LabelSetting.columns`)."""
    return pa.schema([*PATHS, *(pa.field(c.name, COLUMN_TYPES[c.kind]) for c in added)])


def filtered_schema(schema: pa.Schema) -> pa.Schema:
    """Rows a filter dropped: the labelled-path columns plus the reason they were dropped."""
    return schema.append(pa.field("drop_reason", pa.string()))


def _comparable(kind: pa.DataType) -> pa.DataType:
    """`kind` with the differences that read back as the same Python values removed (widths, large/view, dict)."""
    if pa.types.is_dictionary(kind):
        return _comparable(kind.value_type)
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return pa.binary()
    if pa.types.is_integer(kind):
        return pa.int64()
    if pa.types.is_floating(kind):
        return pa.float64()
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return pa.list_(_comparable(kind.value_type))
    if pa.types.is_list_view(kind) or pa.types.is_large_list_view(kind):
        return pa.list_(_comparable(kind.value_type))
    if pa.types.is_struct(kind):
        return pa.struct(
            [pa.field(kind.field(i).name, _comparable(kind.field(i).type)) for i in range(kind.num_fields)]
        )
    return kind


def schema_mismatch(found: pa.Schema, expected: pa.Schema) -> str | None:
    """Why a table stored as `found` cannot be read as `expected` (its first column that is missing, repeated or of
    another type), or None. Extra columns are ignored; int32/int64, string/large_string and list/large_list agree."""
    for field in expected:
        matches = found.get_all_field_indices(field.name)
        if not matches:
            return f"column {field.name!r} is missing"
        if len(matches) > 1:
            return f"column {field.name!r} appears {len(matches)} times"
        stored = found.field(matches[0]).type
        if _comparable(stored) != _comparable(field.type):
            return f"column {field.name!r} has type {stored}, expected {field.type}"
    return None


def missing_values(row: dict[str, Any], columns: Iterable[str]) -> str | None:
    """The first of `columns` that `row` leaves null or holds a null in (a list with a null), or None."""
    for column in columns:
        value = row.get(column)
        if value is None:
            return f"column {column!r} is null"
        if isinstance(value, list) and any(item is None for item in value):
            return f"column {column!r} holds a null at {value.index(None)}"
    return None


def table_bytes(rows: list[dict[str, Any]], schema: pa.Schema, compression: str, row_group_size: int) -> bytes:
    """Parquet bytes of `rows` with an explicit schema and fixed writer settings (no timestamps): the same rows
    give the same bytes."""
    table = pa.Table.from_pylist(rows, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression=None if compression == "none" else compression,
        row_group_size=row_group_size,
        write_statistics=True,
        write_page_index=True,
    )
    return sink.getvalue().to_pybytes()


def with_meta_json(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with its `meta` dict as the JSON text the tables store (sorted keys, UTF-8 kept)."""
    if not isinstance(row.get("meta"), str):
        row["meta"] = json.dumps(row.get("meta") or {}, sort_keys=True, ensure_ascii=False, default=str)
    return row
