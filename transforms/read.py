"""Read problems from JSONL, Parquet or a `datasets` dataset (local, gs://, s3://) into `Problem`s.

Every input row ends as a problem or as a dead letter with its source and reason (DESIGN.md, "Accounting").
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from annotators.answers import parse_reference_answer
from schemas.config import ConfigError, InputConfig
from schemas.records import Problem

PROBLEMS = "problems"
DEAD = "dead_letters"


def dead_letter(stage: str, source: str, reason: str, row: Any) -> dict[str, str]:
    """A dead-letter record; `row` is kept whole (as text) so nothing is lost."""
    text = row if isinstance(row, str) else json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
    return {"stage": stage, "source": source, "reason": reason, "row": text}


def problem_from_row(row: Any, config: InputConfig, source: str) -> Problem | str:
    """Turn one input row into a `Problem`, or return the reason it is rejected."""
    if not isinstance(row, dict):
        return f"row is a {type(row).__name__}, not an object"
    fields = config.fields
    values: dict[str, str] = {}
    for name in ("question", "answer"):
        column = fields[name]
        if column not in row or row[column] is None:
            return f"missing field {column!r} ({name})"
        value = row[column]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return f"field {column!r} ({name}) has type {type(value).__name__}, expected a string"
        if name == "question" and not isinstance(value, str):
            return f"field {column!r} (question) has type {type(value).__name__}, expected a string"
        text = str(value).strip()
        if not text:
            return f"field {column!r} ({name}) is empty"
        values[name] = text
    size = len(values["question"]) + len(values["answer"])
    if size > config.max_chars:
        return f"row too large: {size} characters > input.max_chars={config.max_chars}"
    answer = parse_reference_answer(values["answer"], config.answer_format)
    if not answer:
        return f"no reference answer found in field {fields['answer']!r} (answer_format={config.answer_format})"
    if config.id_field:
        raw_id = row.get(config.id_field)
        if raw_id is None or str(raw_id).strip() == "":
            return f"missing id field {config.id_field!r}"
        problem_id = str(raw_id)
    else:
        problem_id = hashlib.sha256(f"{values['question']}\x1f{answer}".encode()).hexdigest()[:16]
    meta = {k: v for k, v in row.items() if k not in (fields["question"], fields["answer"])}
    meta = json.loads(json.dumps(meta, default=str))  # keep only JSON-safe values
    return Problem(
        problem_id=problem_id,
        question=values["question"],
        answer=answer,
        domain=str(row.get("domain") or config.domain),
        source=config.source or os.path.basename(source.split(":")[0]) or "input",
        meta=meta,
    )


def _emit(row: Any, config: InputConfig, source: str) -> Iterator[Any]:
    parsed = problem_from_row(row, config, source)
    if isinstance(parsed, str):
        yield beam.pvalue.TaggedOutput(DEAD, dead_letter("read", source, parsed, row))
    else:
        yield (parsed, source)


class _ParseFile(beam.DoFn):
    """Reads one matched file and emits (Problem, source) pairs or dead letters."""

    def __init__(self, config: InputConfig, file_format: str):
        self.config = config
        self.file_format = file_format
        self.rows_read = Metrics.counter("read", "rows_read")

    def process(self, readable: fileio.ReadableFile) -> Iterator[Any]:
        path = readable.metadata.path
        if self.file_format == "parquet":
            yield from self._parquet(readable, path)
            return
        with readable.open() as handle:
            for line_number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                self.rows_read.inc()
                source = f"{path}:{line_number}"
                try:
                    row = json.loads(raw)
                except (UnicodeDecodeError, json.JSONDecodeError) as error:
                    text = raw.decode("utf-8", errors="replace").rstrip("\n")
                    yield beam.pvalue.TaggedOutput(DEAD, dead_letter("read", source, f"invalid JSON: {error}", text))
                    continue
                yield from _emit(row, self.config, source)

    def _parquet(self, readable: fileio.ReadableFile, path: str) -> Iterator[Any]:
        import pyarrow.parquet as pq

        try:
            with readable.open() as handle:
                table = pq.read_table(handle)
        except Exception as error:  # noqa: BLE001 - an unreadable file is one dead letter, the run goes on
            self.rows_read.inc()
            yield beam.pvalue.TaggedOutput(DEAD, dead_letter("read", path, f"unreadable Parquet: {error}", path))
            return
        for index, row in enumerate(table.to_pylist()):
            self.rows_read.inc()
            yield from _emit(row, self.config, f"{path}#{index}")


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
    def __init__(self, config: InputConfig):
        self.config = config
        self.rows_read = Metrics.counter("read", "rows_read")

    def process(self, _: Any) -> Iterator[Any]:
        for row, source in _dataset_rows(self.config):
            self.rows_read.inc()
            yield from _emit(row, self.config, source)


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
    group = sorted(group, key=lambda pair: pair[1])
    yield group[0][0]
    for problem, source in group[1:]:
        reason = f"duplicate problem_id {problem.problem_id} (first seen at {group[0][1]})"
        yield beam.pvalue.TaggedOutput(DEAD, dead_letter("read", source, reason, problem.to_dict()))


class ReadProblems(beam.PTransform):
    """Input rows -> {problems: Problem, dead_letters: dict}."""

    def __init__(self, config: InputConfig):
        super().__init__()
        self.config = config

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        fmt = input_format(self.config)
        if fmt == "datasets":
            parsed = (
                pbegin
                | "Start dataset" >> beam.Create([None])
                | "Read dataset rows" >> beam.ParDo(_ParseDatasetRows(self.config)).with_outputs(DEAD, main=PROBLEMS)
            )
        else:
            parsed = (
                pbegin
                | "Match input files" >> fileio.MatchFiles(self.config.path)
                | "Open input files" >> fileio.ReadMatches()
                | "Parse rows" >> beam.ParDo(_ParseFile(self.config, fmt)).with_outputs(DEAD, main=PROBLEMS)
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
