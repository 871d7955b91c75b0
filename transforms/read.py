"""Read problems from JSONL, Parquet or a `datasets` dataset (local, gs://, s3://) into `Problem`s.

Every input row ends as a problem or as a dead letter with its source and reason (DESIGN.md, "Accounting").
Input is data from anywhere, so no row can stop the run: a line is read in bounded chunks (a row above
`MAX_ROW_BYTES` is skipped unparsed), decoded as strict UTF-8, measured for nesting before `json.loads` (which
recurses once per level) and rejected above `MAX_JSON_DEPTH`; text that is not valid Unicode (lone surrogates),
holds a NUL or a non-finite number where a string is expected is a dead letter too. Reasons start with a category
("invalid JSON", "invalid UTF-8", "row too large", "row too deep", "invalid Unicode", ...) then a colon.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from annotators.answers import parse_reference_answer
from schemas.config import ConfigError, InputConfig
from schemas.records import Problem

PROBLEMS = "problems"
DEAD = "dead_letters"

# The largest row read (a JSONL line, or a Parquet/datasets row's serialised other columns). Problems are
# kilobytes; 8 MiB leaves room for big `meta` (code tests) and keeps one hostile line from filling a worker.
MAX_ROW_BYTES = 8 << 20
# Deeper JSON is refused before parsing: json.loads recurses per level, and no problem row nests past a few.
MAX_JSON_DEPTH = 64
# What a dead letter keeps of a row too large to keep whole (its source names the rest).
PREVIEW_CHARS = 1_000
_CHUNK_BYTES = 1 << 20
_PARQUET_BATCH_ROWS = 1_024
_MAX_ERROR_CHARS = 300

# A JSON string, escapes included; an unterminated one runs to the end. Linear: each branch starts differently.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
# Brackets as signed bytes (+1 opens, -1 closes), everything else deleted, for a C-speed running depth.
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


class BadRow(ValueError):
    """A row that cannot become a problem; the message is the dead letter's reason."""


def _short(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _valid_unicode(text: str) -> str:
    """`text` with lone surrogates written as `\\udXXX`, so a dead letter can always be encoded and written."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def dead_letter(stage: str, source: str, reason: str, row: Any) -> dict[str, str]:
    """A dead-letter record; `row` is kept whole (as text) so nothing is lost. Never raises, whatever `row` is.

    Lone surrogates are written out as `\\udXXX` so the record can always be encoded; the reader keeps only a
    preview of a row above its size limit (the source says where the rest is).
    """
    if isinstance(row, str):
        text = row
    else:
        try:
            text = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            # keys that do not sort, or nesting too deep to serialise: keep what can be said about it
            try:
                text = json.dumps(row, ensure_ascii=False, default=str)
            except (TypeError, ValueError, RecursionError) as error:
                text = f"<{type(row).__name__} that cannot be serialised: {type(error).__name__}>"
    return {
        "stage": stage,
        "source": _valid_unicode(str(source)),
        "reason": _valid_unicode(str(reason)),
        "row": _valid_unicode(text),
    }


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON in `text` nests arrays/objects deeper than `limit`, in linear time without parsing it.

    Brackets inside strings do not count; unclosed ones do (json.loads recurses into them before failing).
    """
    if text.count("[") + text.count("{") <= limit:
        return False  # cannot nest deeper than it has openers
    brackets = _JSON_STRING.sub("", text).encode("utf-8", "surrogatepass").translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(itertools.accumulate(memoryview(brackets).cast("b")), default=0) > limit


def parse_json_row(line: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """One JSONL line (bytes, without its newline) as a Python value; raises BadRow with the reason.

    Strict UTF-8 (a leading BOM is dropped), depth measured before parsing, integers over Python's digit limit
    and malformed JSON reported, never raised as anything but BadRow.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = line[error.start : error.start + 4].hex(" ")
        raise BadRow(f"invalid UTF-8: bytes {bad} at offset {error.start} ({error.reason})") from None
    text = text.removeprefix("\ufeff")
    if json_too_deep(text, max_depth):
        raise BadRow(f"row too deep: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except RecursionError:  # not reached after the depth check; kept so no parser limit can escape
        raise BadRow(f"row too deep: JSON nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as error:
        raise BadRow(f"invalid JSON: {_short(str(error))}") from None
    except ValueError:  # int() refuses more digits than sys.get_int_max_str_digits()
        raise BadRow(f"invalid JSON: an integer longer than {sys.get_int_max_str_digits()} digits") from None


def read_lines(handle: BinaryIO, max_bytes: int = MAX_ROW_BYTES) -> Iterator[tuple[int, bytes, int]]:
    """(line number, line, size in bytes) for each line of a binary file, without the newline, in bounded memory.

    A line longer than `max_bytes` is not kept: `line` is then only its first PREVIEW_CHARS bytes, `size` its full
    length (so `size > max_bytes` says it was cut), and the rest is read past in chunks.
    """
    number, size, parts = 0, 0, []
    while chunk := handle.read(_CHUNK_BYTES):
        start = 0
        while start < len(chunk):
            newline = chunk.find(b"\n", start)
            stop = len(chunk) if newline < 0 else newline
            if size <= max_bytes:
                parts.append(chunk[start:stop])
            size += stop - start
            if size > max_bytes and len(parts) > 1:
                parts = [b"".join(parts)[:PREVIEW_CHARS]]
            if newline < 0:
                break
            number += 1
            yield number, _line(parts, size, max_bytes), size
            size, parts = 0, []
            start = newline + 1
    if parts:
        yield number + 1, _line(parts, size, max_bytes), size


def _line(parts: list[bytes], size: int, max_bytes: int) -> bytes:
    line = b"".join(parts)
    return line[:PREVIEW_CHARS] if size > max_bytes else line


def _oversized(line: bytes, size: int, max_bytes: int) -> tuple[str, str]:
    """(reason, preview) of a row too large to keep."""
    preview = line[:PREVIEW_CHARS].decode("utf-8", "backslashreplace")
    return (
        f"row too large: {size} bytes > {max_bytes} (the reader's row size limit)",
        f"{preview}... [{size} bytes, cut to the first {len(preview)} characters]",
    )


def _source_position(source: str) -> tuple[str, int]:
    """(file or dataset, row position) of a source such as `f.jsonl:3`, `f.parquet#3` or `ds[train]#3`."""
    for mark in (":", "#"):
        base, found, position = source.rpartition(mark)
        if found and position.isdigit():
            return base, int(position)
    return source, -1


def _source_name(source: str) -> str:
    """The file or dataset a row came from, without its folder or position."""
    base, _ = _source_position(source)
    return os.path.basename(base.rstrip("/")) or base


def _text_field(value: Any, column: str, name: str) -> str:
    """A question/answer cell as stripped text; raises BadRow when it cannot be one."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRow(f"field {column!r} ({name}) has type {type(value).__name__}, expected a string")
    if name == "question" and not isinstance(value, str):
        raise BadRow(f"field {column!r} (question) has type {type(value).__name__}, expected a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRow(f"field {column!r} ({name}) is {value}, not a finite number")
    text = str(value).strip()
    if not text:
        raise BadRow(f"field {column!r} ({name}) is empty")
    _check_text(text, f"field {column!r} ({name})")
    return text


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise BadRow(f"invalid Unicode: {what} holds a lone surrogate U+{ord(text[error.start]):04X}") from None
    if "\x00" in text:
        raise BadRow(f"invalid Unicode: {what} holds a NUL character")


def _meta(row: dict[str, Any], skip: tuple[str, str], max_bytes: int) -> dict[str, Any]:
    """The other columns, JSON-safe (as they will be written), bounded in size and depth."""
    meta = {k: v for k, v in row.items() if k not in skip}
    try:
        text = json.dumps(meta, default=str, ensure_ascii=False)
        size = len(text.encode("utf-8"))
    except RecursionError:
        raise BadRow("row too deep: other columns nest too deeply to serialise") from None
    except UnicodeEncodeError as error:
        raise BadRow(f"invalid Unicode: a column holds a lone surrogate U+{ord(text[error.start]):04X}") from None
    except (TypeError, ValueError) as error:
        raise BadRow(f"unreadable columns: {_short(str(error))}") from None
    if size > max_bytes:
        raise BadRow(f"row too large: other columns take {size} bytes > {max_bytes} (the reader's row size limit)")
    if json_too_deep(text):
        raise BadRow(f"row too deep: other columns nest deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except (RecursionError, ValueError) as error:
        raise BadRow(f"row too deep: {_short(str(error))}") from None


def problem_from_row(row: Any, config: InputConfig, source: str, max_row_bytes: int = MAX_ROW_BYTES) -> Problem | str:
    """Turn one input row into a `Problem`, or return the reason it is rejected."""
    try:
        return _problem(row, config, source, max_row_bytes)
    except BadRow as error:
        return str(error)


def _problem(row: Any, config: InputConfig, source: str, max_row_bytes: int) -> Problem:
    if not isinstance(row, dict):
        raise BadRow(f"row is a {type(row).__name__}, not an object")
    fields = config.fields
    values: dict[str, str] = {}
    for name in ("question", "answer"):
        column = fields[name]
        if column not in row or row[column] is None:
            raise BadRow(f"missing field {column!r} ({name})")
        values[name] = _text_field(row[column], column, name)
    size = len(values["question"]) + len(values["answer"])
    if size > config.max_chars:
        raise BadRow(f"row too large: {size} characters > input.max_chars={config.max_chars}")
    answer = parse_reference_answer(values["answer"], config.answer_format)
    if not answer:
        raise BadRow(f"no reference answer found in field {fields['answer']!r} (answer_format={config.answer_format})")
    if config.id_field:
        raw_id = row.get(config.id_field)
        if raw_id is None:
            raise BadRow(f"missing id field {config.id_field!r}")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int, float)):
            kind = type(raw_id).__name__
            raise BadRow(f"id field {config.id_field!r} has type {kind}, expected a string or a number")
        if isinstance(raw_id, float) and not math.isfinite(raw_id):
            raise BadRow(f"id field {config.id_field!r} is {raw_id}, not a finite number")
        problem_id = str(raw_id)
        if problem_id.strip() == "":
            raise BadRow(f"missing id field {config.id_field!r}")
        _check_text(problem_id, f"id field {config.id_field!r}")
    else:
        problem_id = hashlib.sha256(f"{values['question']}\x1f{answer}".encode()).hexdigest()[:16]
    domain = row.get("domain") or config.domain
    if not isinstance(domain, str):
        raise BadRow(f"field 'domain' has type {type(domain).__name__}, expected a string")
    _check_text(domain, "field 'domain'")
    return Problem(
        problem_id=problem_id,
        question=values["question"],
        answer=answer,
        domain=domain,
        source=config.source or _source_name(source) or "input",
        meta=_meta(row, (fields["question"], fields["answer"]), max_row_bytes),
    )


def _emit(row: Any, config: InputConfig, source: str, max_row_bytes: int, text: str | None = None) -> Iterator[Any]:
    """The problem of one row, or its dead letter (keeping `text`, the row as read, when there is one)."""
    try:
        parsed = problem_from_row(row, config, source, max_row_bytes)
    except Exception as error:  # noqa: BLE001 - the last guard: one unforeseen row must not stop the run
        parsed = f"unreadable row: {type(error).__name__}: {_short(str(error))}"
    if isinstance(parsed, str):
        yield beam.pvalue.TaggedOutput(DEAD, dead_letter("read", source, parsed, row if text is None else text))
    else:
        yield (parsed, source)


class _ParseFile(beam.DoFn):
    """Reads one matched file and emits (Problem, source) pairs or dead letters."""

    def __init__(self, config: InputConfig, file_format: str, max_row_bytes: int = MAX_ROW_BYTES):
        self.config = config
        self.file_format = file_format
        self.max_row_bytes = max_row_bytes
        self.rows_read = Metrics.counter("read", "rows_read")

    def process(self, readable: fileio.ReadableFile) -> Iterator[Any]:
        path = readable.metadata.path
        if self.file_format == "parquet":
            yield from self._parquet(readable, path)
            return
        with readable.open() as handle:
            for line_number, line, size in read_lines(handle, self.max_row_bytes):
                if not line.strip():
                    continue
                self.rows_read.inc()
                source = f"{path}:{line_number}"
                if size > self.max_row_bytes:
                    reason, preview = _oversized(line, size, self.max_row_bytes)
                    yield beam.pvalue.TaggedOutput(DEAD, dead_letter("read", source, reason, preview))
                    continue
                text = line.decode("utf-8", "backslashreplace").rstrip("\r")
                try:
                    row = parse_json_row(line)
                except BadRow as error:
                    yield beam.pvalue.TaggedOutput(DEAD, dead_letter("read", source, str(error), text))
                    continue
                yield from _emit(row, self.config, source, self.max_row_bytes, text)

    def _parquet(self, readable: fileio.ReadableFile, path: str) -> Iterator[Any]:
        import pyarrow.parquet as pq

        index = 0
        try:
            with readable.open() as handle:
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=_PARQUET_BATCH_ROWS):
                    for row in _batch_rows(batch):
                        self.rows_read.inc()
                        source = f"{path}#{index}"
                        index += 1
                        if isinstance(row, BadRow):
                            yield beam.pvalue.TaggedOutput(DEAD, dead_letter("read", source, str(row), source))
                        else:
                            yield from _emit(row, self.config, source, self.max_row_bytes)
        except Exception as error:  # noqa: BLE001 - an unreadable file (or its unreadable rest) is one dead letter
            self.rows_read.inc()
            where = f" from row {index} on" if index else ""
            reason = f"unreadable Parquet: {_short(str(error))}{where}"
            yield beam.pvalue.TaggedOutput(DEAD, dead_letter("read", path, reason, path))


def _batch_rows(batch: Any) -> Iterator[Any]:
    """The rows of an Arrow record batch as dicts; a row Arrow cannot convert (bad UTF-8, ...) as a BadRow."""
    try:
        yield from batch.to_pylist()
        return
    except Exception:  # noqa: BLE001 - find the row(s) at fault below
        pass
    for offset in range(batch.num_rows):
        try:
            yield batch.slice(offset, 1).to_pylist()[0]
        except Exception as error:  # noqa: BLE001 - this row alone is a dead letter
            yield BadRow(f"unreadable Parquet row: {type(error).__name__}: {_short(str(error))}")


def _dataset_rows(config: InputConfig) -> Iterator[tuple[dict[str, Any], str]]:
    """Rows of a `datasets` dataset: a local save_to_disk folder, or a hub name/config/split."""
    import datasets

    ref = config.dataset
    if config.path and FileSystems.exists(config.path) and os.path.isdir(config.path):
        loaded = datasets.load_from_disk(config.path)
        if isinstance(loaded, datasets.DatasetDict):
            loaded = loaded[ref.split]
        name = config.path
    else:
        name = ref.name or config.path
        loaded = datasets.load_dataset(name, ref.config, split=ref.split)
    for index, row in enumerate(loaded):
        yield row, f"{name}[{ref.split}]#{index}"


class _ParseDatasetRows(beam.DoFn):
    def __init__(self, config: InputConfig, max_row_bytes: int = MAX_ROW_BYTES):
        self.config = config
        self.max_row_bytes = max_row_bytes
        self.rows_read = Metrics.counter("read", "rows_read")

    def process(self, _: Any) -> Iterator[Any]:
        for row, source in _dataset_rows(self.config):
            self.rows_read.inc()
            yield from _emit(row, self.config, source, self.max_row_bytes)


def input_format(config: InputConfig) -> str:
    """The reader to use: explicit, or guessed from the path."""
    if config.format != "auto":
        return config.format
    path = config.path.lower()
    if config.dataset.name and not config.path:
        return "datasets"
    if path.endswith((".parquet", ".pq")):
        return "parquet"
    if path.endswith((".jsonl", ".json", ".jsonl.gz", ".ndjson")):
        return "jsonl"
    if os.path.isdir(config.path):
        return "datasets"
    raise ConfigError(f"input.format: cannot guess the format of {config.path!r}; set jsonl, parquet or datasets")


def check_input(config: InputConfig) -> None:
    """Fail before the pipeline starts when the input matches nothing."""
    if input_format(config) == "datasets":
        return
    matches = FileSystems.match([config.path])[0].metadata_list
    if not matches:
        raise ConfigError(f"input.path: no file matches {config.path!r}")


def _dedupe(item: tuple[str, list[tuple[Problem, str]]]) -> Iterator[Any]:
    """Keep the first row of each problem id (by source position); the others are dead letters."""
    _, group = item
    group = sorted(group, key=lambda pair: _source_position(pair[1]))  # line 2 before line 10
    yield group[0][0]
    for problem, source in group[1:]:
        reason = f"duplicate problem_id: {problem.problem_id} (first seen at {group[0][1]})"  # one group in counts
        yield beam.pvalue.TaggedOutput(DEAD, dead_letter("read", source, reason, problem.to_dict()))


class ReadProblems(beam.PTransform):
    """Input rows -> {problems: Problem, dead_letters: dict}.

    `max_row_bytes` bounds one row (MAX_ROW_BYTES by default); a larger row is a dead letter, never parsed.
    """

    def __init__(self, config: InputConfig, max_row_bytes: int = MAX_ROW_BYTES):
        super().__init__()
        if max_row_bytes <= 0:
            raise ValueError(f"max_row_bytes must be positive, got {max_row_bytes}")
        self.config = config
        self.max_row_bytes = max_row_bytes

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        fmt = input_format(self.config)
        if fmt == "datasets":
            parsed = (
                pbegin
                | "Start dataset" >> beam.Create([None])
                | "Read dataset rows"
                >> beam.ParDo(_ParseDatasetRows(self.config, self.max_row_bytes)).with_outputs(DEAD, main=PROBLEMS)
            )
        else:
            parsed = (
                pbegin
                | "Match input files" >> fileio.MatchFiles(self.config.path)
                | "Open input files" >> fileio.ReadMatches()
                | "Parse rows"
                >> beam.ParDo(_ParseFile(self.config, fmt, self.max_row_bytes)).with_outputs(DEAD, main=PROBLEMS)
            )
        deduped = (
            parsed[PROBLEMS]
            | "Key by problem id" >> beam.Map(lambda pair: (pair[0].problem_id, pair))
            | "Group duplicates" >> beam.GroupByKey()
            | "Drop duplicates" >> beam.FlatMap(_dedupe).with_outputs(DEAD, main=PROBLEMS)
        )
        problems = deduped[PROBLEMS]
        if self.config.limit:
            problems = problems | "Limit problems" >> _Limit(self.config.limit)
        dead = (parsed[DEAD], deduped[DEAD]) | "Merge read dead letters" >> beam.Flatten()
        return {PROBLEMS: problems, DEAD: dead}


class _Limit(beam.PTransform):
    """Keep the `n` problems with the smallest ids (deterministic); the rest are counted (`read.beyond_limit`,
    the manifest's `counts.beyond_limit`), not dead-lettered: a limit is a choice, not an error."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def expand(self, problems: beam.PCollection) -> beam.PCollection:
        cutoff = (
            problems
            | "Ids" >> beam.Map(lambda p: p.problem_id)
            | "Smallest ids" >> beam.combiners.Top.Of(self.n, reverse=True)
            | "Largest kept id" >> beam.Map(lambda ids: ids[-1] if ids else "")
        )
        beyond = Metrics.counter("read", "beyond_limit")

        def route(problem: Problem, last: str) -> Iterator[Problem]:
            if problem.problem_id <= last:
                yield problem
            else:
                beyond.inc()

        return problems | "Route by limit" >> beam.FlatMap(route, beam.pvalue.AsSingleton(cutoff))
