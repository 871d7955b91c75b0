"""The `annotate` pipeline: relabel a finished run from its stored evidence, with zero engine calls.

Labels, verifier columns, judge votes (re-parsed from stored critiques), filters and augmentations are
recomputed from `RUN/evidence/`; nothing is generated. A config whose search or policy differs from the
evidence's is refused, since that evidence could not have come from it (docs/design.md §3).

The evidence is data on disk, so it is checked before it is used: every evidence file's footer and column types
before the pipeline starts (`check_evidence`: a truncated or retyped file stops the command, naming the file and
the column), and each problem's rows inside it (a null where its record needs a value, steps and step ends that do
not pair up: the problem is a dead letter at the `evidence` stage, never labelled from half its evidence).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import typing
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import ReadAllFromParquet

from annotators.evidence import ProblemEvidence
from annotators.judge import evidence_from_critiques
from annotators.mc import McResult, search_status
from annotators.omegaprm import OmegaPRMCounters, OmegaPRMResult
from pipelines import manifest as manifest_lib
from pipelines.synthesize import counters, finish_run, label_and_write, pipeline_options
from schemas import tables
from schemas.config import Config, ConfigError, config_from_dict, merge_config, read_config_file
from schemas.records import Completion, Problem, Solution
from transforms.dead_letters import at_stage, contain, problem_id_of
from transforms.read import DEAD
from transforms.write import WriteDeadLetters

# Config sections that produced the evidence: a relabel must leave their data keys as they were (execution keys,
# schemas.config.EXECUTION_KEYS, may change).
EVIDENCE_SECTIONS = ("run", "input", "policy", "sampling", "steps", "answers", "search")
# Where the problems were read from: a relabel reads them from the evidence, so another location is no difference
# (the demo's input.path is a file under its output folder, which configs/demo.yaml cannot name).
INPUT_LOCATION_KEYS = ("path", "format", "dataset")
# What the stored critiques depend on; the parser may change (critiques are re-parsed).
JUDGE_KEYS = ("engine", "samples", "sampling", "template")


def load_parent(run: str) -> dict[str, Any]:
    path = FileSystems.join(run, "manifest.json")
    if "://" not in run and not os.path.isdir(run):
        raise ConfigError(f"--from {run}: no such run folder")
    if not FileSystems.exists(path):
        raise ConfigError(f"--from {run}: no manifest.json, so it is not a finished run")
    with FileSystems.open(path) as handle:
        return json.loads(handle.read())


def incompatibilities(parent: Config, config: Config) -> list[str]:
    """Why `config` cannot be computed from `parent`'s evidence (empty when it can)."""
    problems = []
    old, new = parent.data_dict(), config.data_dict()
    for key in INPUT_LOCATION_KEYS:
        old["input"].pop(key)
        new["input"].pop(key)
    for section in EVIDENCE_SECTIONS:
        if section == "run":
            if old["run"]["seed"] != new["run"]["seed"]:
                problems.append("run.seed differs: the seeds chose the samples")
            continue
        if old[section] != new[section]:
            keys = sorted(
                k for k in set(old[section]) | set(new[section]) if old[section].get(k) != new[section].get(k)
            )
            problems.append(f"{section} differs ({', '.join(f'{section}.{k}' for k in keys)}): it changes the evidence")
    if config.judge.enabled:
        if not parent.judge.enabled:
            problems.append(
                "judge.enabled: the evidence holds no critiques; a judge needs engine calls (run synthesize)"
            )
        else:
            for key in JUDGE_KEYS:
                if old["judge"][key] != new["judge"][key]:
                    problems.append(f"judge.{key} differs from the stored critiques'")
    return problems


def relabel_config(parent: dict[str, Any], config_path: str | None = None, overrides: Sequence[str] = ()) -> Config:
    """The config of a relabel of `parent` (its manifest): the parent's own config, `--config` laid over it (only
    the keys the file names), then `--set`. Refused (ConfigError) where a data key of the evidence sections really
    differs; the input's location is always the parent's, so the new run's identity does not depend on it."""
    data = parent["config"]
    if config_path:
        data = merge_config(data, read_config_file(config_path))
    config = config_from_dict(data, list(overrides))
    parent_config = config_from_dict(parent["config"])
    problems = incompatibilities(parent_config, config)
    if problems:
        raise ConfigError("annotate: this config needs new generation, not a relabel:\n  " + "\n  ".join(problems))
    return dataclasses.replace(config, input=parent_config.input)


def _required(record: type) -> tuple[str, ...]:
    """The fields of a record type that cannot be None."""
    hints = typing.get_type_hints(record)
    return tuple(f.name for f in dataclasses.fields(record) if type(None) not in typing.get_args(hints[f.name]))


# The columns of each evidence table that must hold a value (and, for a list, no null) for its rows to be used.
REQUIRED = {
    "problems": ("problem_id", "question", "answer", "domain"),
    "solutions": _required(Solution),
    "completions": _required(Completion),
    "critiques": ("problem_id", "path_id", "critique_index", "text"),
    "omegaprm_paths": ("id", "problem_id", "completions", "labels"),
    "omegaprm_nodes": ("problem_id", "node_id"),
}


def evidence_schema(folder: str) -> pa.Schema:
    """The schema the evidence table in `RUN/evidence/<folder>/` was written with."""
    if folder == "omegaprm_nodes":
        return tables.OMEGAPRM_NODES
    if folder == "omegaprm_paths":
        return tables.paths_schema()
    return {
        "problems": tables.PROBLEMS,
        "solutions": tables.SOLUTIONS,
        "completions": tables.COMPLETIONS,
        "critiques": tables.CRITIQUES,
    }[folder]


def check_evidence(run: str) -> None:
    """Raise TableError (`<file>: <reason>`) for the first evidence file that is not a Parquet file, or whose columns
    are not its table's, and for a dead-letter file that is not JSON lines. Reads footers, not data."""
    import pyarrow.parquet as pq

    for folder in REQUIRED:
        pattern = FileSystems.join(run, "evidence", folder, "part-*.parquet")
        for match in sorted(FileSystems.match([pattern])[0].metadata_list, key=lambda m: m.path):
            try:
                with FileSystems.open(match.path) as handle:
                    schema = pq.ParquetFile(handle).schema_arrow
            except Exception as error:  # noqa: BLE001 - whatever the cause, the file cannot be used
                raise tables.TableError(f"{match.path}: not a readable Parquet file ({error})") from None
            if mismatch := tables.schema_mismatch(schema, evidence_schema(folder)):
                raise tables.TableError(f"{match.path}: {mismatch}")
    dead = FileSystems.join(run, "dead_letters", "dead_letters.jsonl")
    try:
        list(_read_dead_letters(dead))
    except Exception as error:  # noqa: BLE001 - missing, not UTF-8, not JSON, not records
        raise tables.TableError(f"{dead}: {type(error).__name__}: {error}") from None


# What names a row of each evidence table within its problem (rows arrive in no set order).
ROW_KEYS = {
    "problems": (),
    "solutions": ("solution_index",),
    "completions": ("solution_index", "step_index", "completion_index"),
    "critiques": ("path_id", "critique_index"),
    "omegaprm_paths": ("id",),
    "omegaprm_nodes": ("node_id",),
}


def _check_rows(groups: dict[str, list[dict[str, Any]]], used: tuple[str, ...]) -> None:
    """Raise ValueError naming the first row (by key) of `used` tables that its record cannot be built from."""
    for table in used:
        keys = ROW_KEYS[table]
        for row in sorted(groups[table], key=lambda r: tuple(str(r.get(k)) for k in keys)):
            problem = tables.missing_values(row, REQUIRED[table])
            if problem is None and table == "solutions" and len(row["steps"]) != len(row["step_ends"]):
                problem = f"{len(row['steps'])} steps but {len(row['step_ends'])} step ends"
            if problem is not None:
                where = "".join(f", {k} {row.get(k)!r}" for k in keys)
                raise ValueError(f"{table} row of problem {row.get('problem_id')!r}{where}: {problem}")


def _read(pipeline: beam.Pipeline, run: str, folder: str, label: str) -> beam.PCollection:
    glob = FileSystems.join(run, "evidence", folder, "part-*.parquet")
    return (
        pipeline
        | f"{label} glob" >> beam.Create([glob])
        | f"Read {label}" >> ReadAllFromParquet()  # an empty glob yields nothing (docs/infrastructure.md §3.3)
        | f"Key {label}" >> beam.Map(lambda r: (r["problem_id"], r))
    )


def _problem(row: dict[str, Any]) -> Problem:
    return Problem.from_dict({**row, "meta": json.loads(row["meta"] or "{}")})


def _rebuild(item: tuple[str, dict[str, list[dict[str, Any]]]], config: Config) -> Iterator[Any]:
    """One problem's evidence rebuilt (or its label-stage dead letter); a problem the parent run dead-lettered
    before its evidence was written keeps the parent's dead letters, since nothing here can recompute them."""
    _, groups = item
    if not groups["problems"]:
        for letter in groups["dead_letters"]:
            yield beam.pvalue.TaggedOutput(DEAD, letter)
        return
    stored = groups["problems"][0]
    yield from contain("label", lambda: _evidence(groups, config), str(stored.get("source") or ""), stored)


def _evidence(groups: dict[str, list[dict[str, Any]]], config: Config) -> Iterator[ProblemEvidence]:
    """One problem's stored evidence, as the search would have handed it to the label stage."""
    used = ("omegaprm_paths", "omegaprm_nodes") if config.search.method == "omegaprm" else ("solutions", "completions")
    with at_stage("evidence"):
        _check_rows(groups, ("problems", *used, *(("critiques",) if config.judge.enabled else ())))
    problem = _problem(groups["problems"][0])
    search: McResult | OmegaPRMResult
    if config.search.method == "omegaprm":
        rows = sorted(groups["omegaprm_paths"], key=lambda r: r["id"])
        roots = [n["mc"] for n in groups["omegaprm_nodes"] if n["parent_id"] is None]
        search = OmegaPRMResult(
            problem_id=problem.problem_id,
            status="stored search",
            counters=OmegaPRMCounters(),
            root_mc=roots[0] if roots else None,
            paths=[{k: v for k, v in r.items() if k in tables.PATHS.names} for r in rows],
        )
    else:
        solutions = [Solution(**r) for r in sorted(groups["solutions"], key=lambda r: r["solution_index"])]
        completions = [
            Completion(**r)
            for r in sorted(
                groups["completions"], key=lambda r: (r["solution_index"], r["step_index"], r["completion_index"])
            )
        ]
        status = search_status(solutions, config.search.prefilter)
        search = McResult(problem=problem, status=status, solutions=solutions, completions=completions)
    evidence = ProblemEvidence(problem=problem, search=search)
    if config.judge.enabled:
        by_path: dict[str, list[dict[str, Any]]] = {}
        for critique in groups["critiques"]:
            by_path.setdefault(critique["path_id"], []).append(critique)
        steps = {path.id: len(path.steps) for path in evidence.paths()}
        for path_id, critiques in by_path.items():
            if path_id in steps:
                texts = [c["text"] for c in sorted(critiques, key=lambda c: c["critique_index"])]
                with at_stage("judge"):
                    evidence.critiques[path_id] = evidence_from_critiques(texts, steps[path_id], config.judge.parser)
    yield evidence


def build(pipeline: beam.Pipeline, parent_run: str, config: Config, output: str) -> None:
    tables_in = ["problems", "solutions", "completions", "critiques", "omegaprm_paths", "omegaprm_nodes"]
    grouped = {name: _read(pipeline, parent_run, name, name) for name in tables_in}
    # The parent's read dead letters carry over; later ones carry over for problems without stored evidence.
    parent_dead = FileSystems.join(parent_run, "dead_letters", "dead_letters.jsonl")
    parent_letters = (
        pipeline
        | "Parent dead letters" >> beam.Create([parent_dead])
        | "Read parent dead letters" >> beam.FlatMap(_read_dead_letters)
        | "Split parent dead letters" >> beam.Partition(lambda letter, _: int(letter["stage"] != "read"), 2)
    )
    grouped["dead_letters"] = parent_letters[1] | "Key parent dead letters" >> beam.Map(
        lambda letter: (problem_id_of(letter) or "", letter)
    )
    rebuilt = (
        grouped
        | "Join evidence by problem" >> beam.CoGroupByKey()
        | "Rebuild evidence" >> beam.FlatMap(_rebuild, config).with_outputs(DEAD, main="evidence")
    )
    dead = [
        parent_letters[0],
        rebuilt[DEAD],
        *label_and_write(rebuilt["evidence"], config, output),
    ]
    _ = (
        tuple(dead)
        | "Merge dead letters" >> beam.Flatten()
        | "Write dead letters" >> WriteDeadLetters(FileSystems.join(output, "dead_letters", "dead_letters.jsonl"))
    )


def _read_dead_letters(path: str) -> Iterator[dict[str, str]]:
    with FileSystems.open(path) as handle:
        for line in handle.read().decode().splitlines():
            if line.strip():
                yield json.loads(line)


def run(parent_run: str, config: Config, output: str, beam_args: list[str] | None = None) -> dict[str, Any]:
    """Relabel `parent_run` with `config` into `output`; refuses configs the evidence cannot serve (ConfigError) and
    evidence that cannot be read (TableError)."""
    parent = load_parent(parent_run)
    parent_config = config_from_dict(parent["config"])
    problems = incompatibilities(parent_config, config)
    if problems:
        raise ConfigError("annotate: this config needs new generation, not a relabel:\n  " + "\n  ".join(problems))
    check_evidence(parent_run)
    if FileSystems.exists(FileSystems.join(output, "manifest.json")):
        FileSystems.delete([FileSystems.join(output, "manifest.json")])
    started = time.time()
    pipeline = beam.Pipeline(options=pipeline_options(beam_args or []))
    build(pipeline, parent_run, config, output)
    result = pipeline.run()
    result.wait_until_finish()
    values = counters(result)
    values["read.rows_read"] = parent["counts"]["read"]
    values["read.beyond_limit"] = parent["counts"].get("beyond_limit", 0)
    values["read.blank_lines"] = parent["counts"].get("blank_lines", 0)
    lineage = {
        "parent_run": parent_run,
        "parent_config_hash": parent["config_hash"],
        "parent_code_version": parent["code_version"],
        "parent_counts": parent["counts"],
        "evidence": FileSystems.join(parent_run, "evidence"),
    }
    manifest = manifest_lib.write_manifest(
        output,
        config,
        values,
        wall_seconds=time.time() - started,
        command="annotate",
        lineage=lineage,
        pins=parent.get("pins"),  # the evidence, so the pinned models and input, are the parent's
    )
    finish_run(output)
    return manifest
