"""Read problems from JSONL, Parquet or a `datasets` dataset (local, gs://, s3://) into `Problem`s.

Every input row ends as a problem or as a dead letter with its source and reason (docs/design.md §9).
Input is data from anywhere, so no row can stop the run: a line is read in bounded chunks (a row above
`MAX_ROW_BYTES` is skipped unparsed), decoded as strict UTF-8, measured for nesting before `json.loads` (which
recurses once per level) and rejected above `MAX_JSON_DEPTH`; text that is not valid Unicode (lone surrogates),
holds a NUL or a non-finite number where a string is expected is a dead letter too. Reasons start with a category
("invalid JSON", "invalid UTF-8", "row too large", "row too deep", "invalid Unicode", ...) then a colon. A problem
whose reference answer the grader could not compare with any answer in time is refused here, once ("gold
undecidable", `annotators.answers.gold_undecidable`), rather than costing every sample the grader's timeout.

A file is bounded as a whole too. What it decodes to (decompressed JSONL; Parquet rows as Arrow holds them, a
dictionary value counted each time a row uses it) is capped by `input.max_file_bytes` and by MAX_EXPANSION times
its stored size, and is measured before it is decoded: compressed JSONL is inflated a chunk at a time, a Parquet row
group's declared size and each row's decoded size are checked before Arrow or Python expand them. What lies beyond
the cap, or beyond a read error, is one dead letter for the rest of the file. Blank lines are skipped a run at a
time and counted (`read.blank_lines`).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import itertools
import json
import lzma
import math
import os
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from annotators.answers import gold_undecidable, parse_reference_answer
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
# What one file may decode to (default of `input.max_file_bytes`); the rest of a larger file is one dead letter.
MAX_FILE_BYTES = 2 << 30
# A file may also decode to at most MAX_EXPANSION times its stored size, or EXPANSION_FLOOR bytes if that is more:
# text compresses a few times over, a bomb thousands of times (gzip of newlines, one Parquet dictionary string
# used by every row). The floor keeps small, very repetitive files readable.
MAX_EXPANSION = 100
EXPANSION_FLOOR = 16 << 20
_CHUNK_BYTES = 1 << 20
_PARQUET_BATCH_ROWS = 1_024
# A Parquet batch is sized to about this many declared bytes; rows become Python at most this many bytes at a time.
_PARQUET_BATCH_BYTES = 16 << 20
_CONVERT_BYTES = 8 << 20
_MAX_ERROR_CHARS = 300

# A JSON string, escapes included; an unterminated one runs to the end. Linear: each branch starts differently.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
# Brackets as signed bytes (+1 opens, -1 closes), everything else deleted, for a C-speed running depth.
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
# A run of blank lines (ASCII whitespace, as bytes.isspace), up to its last newline. Linear: the run is scanned
# once and given back only up to that newline.
_BLANK_RUN = re.compile(rb"[ \t\r\n\x0b\x0c]*\n")


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


def decode_budget(stored_bytes: int, max_file_bytes: int = MAX_FILE_BYTES) -> int:
    """The most bytes a file of `stored_bytes` may decode to: `max_file_bytes`, or less for a small compressed file."""
    return min(max_file_bytes, max(EXPANSION_FLOOR, MAX_EXPANSION * max(stored_bytes, 0)))


def _budget_note(budget: int, stored_bytes: int, max_file_bytes: int) -> str:
    """Which limit `decode_budget` took, for a dead letter's reason."""
    if budget >= max_file_bytes:
        return "input.max_file_bytes"
    if budget == EXPANSION_FLOOR:
        return f"a file of {stored_bytes} stored bytes may decode to {EXPANSION_FLOOR}"
    return f"{MAX_EXPANSION} times its {stored_bytes} stored bytes"


@dataclass(frozen=True)
class Unread:
    """The part of a file a reader did not read: from `position` (a line number or row index) on, and why."""

    position: int
    reason: str


class LineReader:
    """(line number, line, size in bytes) for each non-blank line of a binary file, without its newline.

    Memory and work are bounded: a line longer than `max_line_bytes` is not kept (`line` is its first PREVIEW_CHARS
    bytes, `size` its full length, so `size > max_line_bytes` says it was cut); blank lines (ASCII whitespace only)
    are skipped a run at a time at C speed and counted in `blank_lines`; reading stops after `max_bytes` bytes or at
    a read error, and `unread` then says from which line on and why (the line in progress is part of the rest).
    """

    def __init__(self, handle: BinaryIO, max_line_bytes: int = MAX_ROW_BYTES, max_bytes: int | None = None):
        self.handle = handle
        # one underlying read at a time where the file has it, so a read error loses no line already decoded
        self._read_some = getattr(handle, "read1", handle.read)
        self.max_line_bytes = max_line_bytes
        self.max_bytes = max_bytes
        self.blank_lines = 0
        self.bytes_read = 0
        self.unread: Unread | None = None
        self._stop: str | None = None

    def _read(self) -> bytes:
        """The next chunk, cut at the byte budget; b"" at the end, at the budget or at a read error (`_stop`)."""
        size = _CHUNK_BYTES
        if self.max_bytes is not None:
            size = min(size, self.max_bytes - self.bytes_read + 1)  # one byte past the budget tells there is more
        try:
            chunk = self._read_some(size)
        except Exception as error:  # noqa: BLE001 - a bad disk, a corrupt gzip stream: the rest is one dead letter
            self._stop = f"unreadable file: {type(error).__name__}: {_short(str(error))}"
            return b""
        if self.max_bytes is not None and self.bytes_read + len(chunk) > self.max_bytes:
            chunk = chunk[: self.max_bytes - self.bytes_read]
            self._stop = f"file too large: decodes to more than {self.max_bytes} bytes"
        self.bytes_read += len(chunk)
        return chunk

    def __iter__(self) -> Iterator[tuple[int, bytes, int]]:
        number, size, parts, blank = 0, 0, [], True
        while chunk := self._read():
            start = 0
            while start < len(chunk):
                if size == 0 and (run := _BLANK_RUN.match(chunk, start)):
                    newlines = chunk.count(b"\n", start, run.end())
                    number += newlines
                    self.blank_lines += newlines
                    start = run.end()
                    continue
                newline = chunk.find(b"\n", start)
                stop = len(chunk) if newline < 0 else newline
                piece = chunk[start:stop]
                blank = blank and (not piece or piece.isspace())
                if size <= self.max_line_bytes:
                    parts.append(piece)
                size += stop - start
                if size > self.max_line_bytes and len(parts) > 1:
                    parts = [b"".join(parts)[:PREVIEW_CHARS]]
                if newline < 0:
                    break
                number += 1
                if blank:
                    self.blank_lines += 1
                else:
                    yield number, _line(parts, size, self.max_line_bytes), size
                size, parts, blank = 0, [], True
                start = newline + 1
            if self._stop is not None:
                break
        if self._stop is not None:
            self.unread = Unread(number + 1, self._stop)  # the line in progress is part of the unread rest
        elif parts:
            if blank:
                self.blank_lines += 1
            else:
                yield number + 1, _line(parts, size, self.max_line_bytes), size


class _Inflate:
    """A zlib stream (Beam's DEFLATE) read with zlib's `max_length`, so one read never inflates more than asked."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.inflater = zlib.decompressobj()

    def read(self, size: int) -> bytes:
        while not self.inflater.eof:
            data = self.inflater.unconsumed_tail or self.raw.read(_CHUNK_BYTES)
            if not data:
                raise EOFError("the deflate stream ends before its end marker")
            if out := self.inflater.decompress(data, size):
                return out
        return b""


@contextlib.contextmanager
def open_decoded(readable: fileio.ReadableFile) -> Iterator[BinaryIO]:
    """A matched file's bytes, decompressed by its extension as Beam would, but never more than a read asks for.

    Beam's own reader inflates a whole 16 MiB compressed read at once: gigabytes from a gzip bomb, before any cap
    can look at it. The standard library's readers and zstandard's stream reader take a size.
    """
    kind = CompressionTypes.detect_compression_type(readable.metadata.path)
    with readable.open(compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        if kind == CompressionTypes.GZIP:
            with gzip.GzipFile(fileobj=raw, mode="rb") as decoded:
                yield decoded
        elif kind == CompressionTypes.BZIP2:
            with bz2.BZ2File(raw) as decoded:
                yield decoded
        elif kind == CompressionTypes.LZMA:
            with lzma.LZMAFile(raw) as decoded:
                yield decoded
        elif kind == CompressionTypes.ZSTD:
            import zstandard

            with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False) as decoded:
                yield decoded
        elif kind == CompressionTypes.DEFLATE:
            yield _Inflate(raw)
        else:
            yield raw


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
    if undecidable := gold_undecidable(answer):  # once here, not once per sample at the grader's timeout
        raise BadRow(f"gold undecidable: {undecidable}")
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

    def __init__(
        self,
        config: InputConfig,
        file_format: str,
        max_row_bytes: int = MAX_ROW_BYTES,
        max_file_bytes: int = MAX_FILE_BYTES,
    ):
        self.config = config
        self.file_format = file_format
        self.max_row_bytes = max_row_bytes
        self.max_file_bytes = max_file_bytes
        self.rows_read = Metrics.counter("read", "rows_read")
        self.blank_lines = Metrics.counter("read", "blank_lines")

    def process(self, readable: fileio.ReadableFile) -> Iterator[Any]:
        path = readable.metadata.path
        stored = readable.metadata.size_in_bytes or 0
        budget = decode_budget(stored, self.max_file_bytes)
        reader: LineReader | ParquetRows | None = None
        try:
            if self.file_format == "parquet":
                with readable.open() as handle:
                    reader = ParquetRows(handle, self.max_row_bytes, budget)
                    yield from self._parquet(reader, path)
            else:
                with open_decoded(readable) as handle:
                    reader = LineReader(handle, self.max_row_bytes, budget)
                    yield from self._jsonl(reader, path)
                self.blank_lines.inc(reader.blank_lines)
            unread = reader.unread
        except OSError as error:  # a folder, a file gone or unreadable: the file (or its rest) is one dead letter
            unread = Unread(0, f"unreadable file: {type(error).__name__}: {_short(str(error))}")
        if unread is not None:
            self.rows_read.inc()  # the rest counts as one row read, so the counts still add up
            reason = unread.reason
            if reason.startswith("file too large"):
                reason += f" ({_budget_note(budget, stored, self.max_file_bytes)})"
            first, unit = (0, "rows") if self.file_format == "parquet" else (1, "lines")
            if unread.position > first:
                reason += f"; {unit} {unread.position} on are not read"
            yield beam.pvalue.TaggedOutput(DEAD, dead_letter("read", path, reason, path))

    def _jsonl(self, lines: LineReader, path: str) -> Iterator[Any]:
        for line_number, line, size in lines:
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

    def _parquet(self, rows: ParquetRows, path: str) -> Iterator[Any]:
        for index, row in rows:
            self.rows_read.inc()
            source = f"{path}#{index}"
            if isinstance(row, BadRow):
                yield beam.pvalue.TaggedOutput(DEAD, dead_letter("read", source, str(row), source))
            else:
                yield from _emit(row, self.config, source, self.max_row_bytes)


class ParquetRows:
    """(row index, row) for each row of a Parquet file: a dict, or a BadRow with the reason it is not one.

    Nothing is expanded before it is measured. Text columns are read as Arrow dictionaries, so a dictionary value
    is held once however many rows use it; a row group whose declared (uncompressed) size does not fit in what is
    left of `max_bytes` is not read; each row's decoded size (`row_sizes`) is counted against `max_bytes` before it
    becomes Python, a row above `max_row_bytes` is a BadRow without being converted, and rows become Python at most
    _CONVERT_BYTES at a time. Where reading stops early (the budget, an unreadable file) `unread` says from which
    row on and why.
    """

    def __init__(self, handle: BinaryIO, max_row_bytes: int = MAX_ROW_BYTES, max_bytes: int = MAX_FILE_BYTES):
        self.handle = handle
        self.max_row_bytes = max_row_bytes
        self.max_bytes = max_bytes
        self.decoded = 0
        self.unread: Unread | None = None

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
        import pyarrow.parquet as pq

        index = 0
        try:
            metadata = pq.ParquetFile(self.handle).metadata  # the footer only
            columns = [metadata.schema.column(i) for i in range(metadata.num_columns)]
            strings = [column.path for column in columns if column.physical_type == "BYTE_ARRAY"]
            parquet = pq.ParquetFile(self.handle, metadata=metadata, read_dictionary=strings)
            for group in range(metadata.num_row_groups):
                declared = metadata.row_group(group).total_byte_size
                rows = metadata.row_group(group).num_rows
                if self.decoded + declared > self.max_bytes:
                    reason = f"file too large: row group {group} declares {declared} bytes, past {self.max_bytes}"
                    self.unread = Unread(index, reason)
                    return
                batch_rows = min(_PARQUET_BATCH_ROWS, max(1, _PARQUET_BATCH_BYTES * rows // max(declared, 1)))
                for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group]):
                    for row in self._rows(batch):
                        if isinstance(row, Unread):
                            self.unread = Unread(index, row.reason)
                            return
                        yield index, row
                        index += 1
        except Exception as error:  # noqa: BLE001 - an unreadable file (or its unreadable rest) is one dead letter
            self.unread = Unread(index, f"unreadable Parquet: {_short(str(error))}")

    def _rows(self, batch: Any) -> Iterator[dict[str, Any] | BadRow | Unread]:
        """The rows of one batch, converted a bounded slice at a time; an Unread where the budget runs out."""
        start, pending = 0, 0  # the slice of rows waiting to be converted, and its decoded bytes
        for offset, size in enumerate(row_sizes(batch).tolist()):
            if self.decoded + size > self.max_bytes:
                yield from _batch_rows(_dense(batch.slice(start, offset - start)))
                yield Unread(offset, f"file too large: decodes to more than {self.max_bytes} bytes")
                return
            self.decoded += size
            if size > self.max_row_bytes or pending + size > _CONVERT_BYTES:
                yield from _batch_rows(_dense(batch.slice(start, offset - start)))
                start, pending = offset, 0
            if size > self.max_row_bytes:
                yield BadRow(
                    f"row too large: {size} bytes decoded > {self.max_row_bytes} (the reader's row size limit)"
                )
                start = offset + 1
                continue
            pending += size
        yield from _batch_rows(_dense(batch.slice(start, batch.num_rows - start)))


def row_sizes(batch: Any) -> Any:
    """The bytes each row of an Arrow record batch decodes to, without decoding it (a numpy int64 array).

    Text and binary values count their length and offset, fixed-width values their width, lists and structs their
    parts, and a dictionary-encoded value its own size each time a row uses it (what Python will hold).
    """
    import numpy as np

    total = np.zeros(batch.num_rows, dtype=np.int64)
    for column in batch.columns:
        total += _value_sizes(column)
    return total


def _value_sizes(array: Any) -> Any:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    count = len(array)
    if pa.types.is_dictionary(kind):
        values = _value_sizes(array.dictionary)
        if len(values) == 0:
            return np.zeros(count, dtype=np.int64)
        indices = pc.fill_null(array.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        return np.where(array.is_valid().to_numpy(zero_copy_only=False), values[indices], 0)
    if isinstance(kind, pa.ExtensionType):
        return _value_sizes(array.storage)
    if pa.types.is_string_view(kind) or pa.types.is_binary_view(kind):
        array = array.cast(pa.large_binary())  # binary_length has no kernel for views; the batch holds them anyway
        kind = array.type
    if pa.types.is_string(kind) or pa.types.is_binary(kind):
        return pc.fill_null(pc.binary_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64) + 4
    if pa.types.is_large_string(kind) or pa.types.is_large_binary(kind):
        return pc.fill_null(pc.binary_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64) + 8
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
        # `offsets` follow a slice, `values` do not: the running sum of every child is cut at this slice's offsets
        running = np.concatenate([[0], np.cumsum(_value_sizes(array.values))])
        offsets = array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        return running[offsets[1:]] - running[offsets[:-1]] + (8 if pa.types.is_large_list(kind) else 4)
    if pa.types.is_fixed_size_list(kind):
        width = kind.list_size
        values = array.values.slice(array.offset * width, count * width)
        return _value_sizes(values).reshape(count, width).sum(axis=1) if width else np.zeros(count, dtype=np.int64)
    if pa.types.is_struct(kind):
        total = np.zeros(count, dtype=np.int64)
        for field in range(kind.num_fields):
            total += _value_sizes(array.field(field))
        return total
    if pa.types.is_null(kind):
        return np.zeros(count, dtype=np.int64)
    try:
        return np.full(count, max(1, kind.bit_width // 8), dtype=np.int64)
    except ValueError:  # not fixed width: unions, run-end encoding, ... which Parquet does not produce
        raise ValueError(f"column type {kind} is not read") from None


def _dense(batch: Any) -> Any:
    """`batch` with its dictionary columns decoded (faster to turn into Python); `batch` itself if it cannot be."""
    import pyarrow as pa

    def dense(kind: Any) -> Any:
        if pa.types.is_dictionary(kind):
            return dense(kind.value_type)
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            field = kind.value_field.with_type(dense(kind.value_type))
            return pa.list_(field) if pa.types.is_list(kind) else pa.large_list(field)
        if pa.types.is_struct(kind):
            return pa.struct([kind.field(i).with_type(dense(kind.field(i).type)) for i in range(kind.num_fields)])
        return kind

    schema = pa.schema([field.with_type(dense(field.type)) for field in batch.schema])
    if schema == batch.schema:
        return batch
    try:
        return batch.cast(schema)
    except (pa.ArrowException, ValueError, TypeError):
        return batch


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


def _local_dataset_folder(config: InputConfig) -> bool:
    return bool(config.path) and FileSystems.exists(config.path) and os.path.isdir(config.path)


def hub_dataset(config: InputConfig) -> str | None:
    """The Hub repo id a `datasets` input reads (`input.dataset.name`, else `input.path`); None for any other input:
    a file, a save_to_disk folder, a local folder of data files or a remote URL."""
    if input_format(config) != "datasets" or _local_dataset_folder(config):
        return None
    name = config.dataset.name or config.path
    return None if not name or "://" in name or os.path.exists(os.path.expanduser(name)) else name


def _dataset_rows(config: InputConfig) -> Iterator[tuple[dict[str, Any], str]]:
    """Rows of a `datasets` dataset: a local save_to_disk folder, or a hub name/config/split."""
    import datasets

    ref = config.dataset
    if _local_dataset_folder(config):
        loaded = datasets.load_from_disk(config.path)
        if isinstance(loaded, datasets.DatasetDict):
            loaded = loaded[ref.split]
        name = config.path
    else:
        name = ref.name or config.path
        # `revision`: the commit sha the run pinned (pipelines/pins.py), so a rerun reads exactly these rows.
        loaded = datasets.load_dataset(name, ref.config, split=ref.split, revision=ref.revision)
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
    """Fail before the pipeline starts when the input matches nothing, or matches a folder."""
    fmt = input_format(config)
    if fmt == "datasets":
        return
    matches = FileSystems.match([config.path])[0].metadata_list
    if not matches:
        raise ConfigError(f"input.path: no file matches {config.path!r}")
    for match in matches:  # a glob matches files only; a path names a folder as it is
        if "://" not in match.path and os.path.isdir(match.path):
            raise ConfigError(
                f"input.path: {match.path!r} is a folder, not a {fmt} file "
                "(give a file or a glob of files; input.format: datasets reads a saved dataset folder)"
            )


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
    `max_file_bytes` bounds what one file decodes to (`config.max_file_bytes` by default, and `decode_budget`);
    the rest of a larger file is one dead letter.
    """

    def __init__(self, config: InputConfig, max_row_bytes: int = MAX_ROW_BYTES, max_file_bytes: int | None = None):
        super().__init__()
        max_file_bytes = config.max_file_bytes if max_file_bytes is None else max_file_bytes
        for name, value in (("max_row_bytes", max_row_bytes), ("max_file_bytes", max_file_bytes)):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.config = config
        self.max_row_bytes = max_row_bytes
        self.max_file_bytes = max_file_bytes

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
                >> beam.ParDo(_ParseFile(self.config, fmt, self.max_row_bytes, self.max_file_bytes)).with_outputs(
                    DEAD, main=PROBLEMS
                )
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
