"""The `synthesize` pipeline: read problems -> search -> label -> write shards, evidence and dead letters.

`build(pipeline, config, output)` adds the stages to a Beam pipeline (tests inject their own); `run(...)`
builds, runs and waits, then writes `manifest.json` last, so a manifest marks a finished run.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines import manifest as manifest_lib
from schemas import tables
from schemas.config import Config, ConfigError
from transforms.label import COMPLETIONS, PATHS, SOLUTIONS, LabelEvidence
from transforms.read import DEAD, PROBLEMS, ReadProblems, check_input
from transforms.search import EVIDENCE, STATS, SearchProblems
from transforms.write import WriteDeadLetters, WriteShards

log = logging.getLogger(__name__)


def _solution_key(row: dict[str, Any]) -> str:
    return f"{row['problem_id']}/{row['solution_index']:06d}"


def _completion_key(row: dict[str, Any]) -> str:
    return f"{row['problem_id']}/{row['solution_index']:06d}/{row['step_index']:04d}/{row['completion_index']:04d}"


def build(pipeline: beam.Pipeline, config: Config, output: str) -> None:
    """Add every stage of a synthesize run writing under `output` to `pipeline`."""
    out = config.output
    read = pipeline | "Read problems" >> ReadProblems(config.input)
    searched = read[PROBLEMS] | "Search" >> SearchProblems(config)
    labelled = searched[EVIDENCE] | "Label" >> LabelEvidence(config)
    _ = labelled[PATHS] | "Write paths" >> WriteShards(
        FileSystems.join(output, "data"),
        tables.paths_schema(),
        key=lambda row: row["id"],
        num_shards=out.num_shards,
        compression=out.compression,
        row_group_size=out.row_group_size,
    )
    _ = labelled[SOLUTIONS] | "Write solutions" >> WriteShards(
        FileSystems.join(output, "evidence", "solutions"),
        tables.SOLUTIONS,
        key=_solution_key,
        num_shards=out.num_shards,
        compression=out.compression,
        prefix="part",
    )
    _ = labelled[COMPLETIONS] | "Write completions" >> WriteShards(
        FileSystems.join(output, "evidence", "completions"),
        tables.COMPLETIONS,
        key=_completion_key,
        num_shards=out.num_shards,
        compression=out.compression,
        prefix="part",
    )
    dead = (read[DEAD], searched[DEAD], labelled[DEAD]) | "Merge dead letters" >> beam.Flatten()
    _ = dead | "Write dead letters" >> WriteDeadLetters(FileSystems.join(output, "dead_letters", "dead_letters.jsonl"))
    _ = (
        searched[STATS]
        | "Collect engine stats" >> beam.combiners.ToList()
        | "Write engine stats" >> beam.Map(_write_json, FileSystems.join(output, "_work", "engine_stats.json"))
    )


def _write_json(items: list[dict[str, Any]], path: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(items, sort_keys=True).encode())


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = "FnApiRunner"  # Prism needs a download this network refuses (infra.md §2.2)
    return options


def counters(result: beam.runners.runner.PipelineResult) -> dict[str, float]:
    """Committed counter values (and distribution sums) keyed by `namespace.name`."""
    metrics = result.metrics().query(MetricsFilter())
    values: dict[str, float] = {}
    for counter in metrics["counters"]:
        key = f"{counter.key.metric.namespace}.{counter.key.metric.name}"
        values[key] = values.get(key, 0) + (counter.committed or 0)
    return values


def check_model(config: Config) -> None:
    """A local-looking model path that does not exist is a config error, not a hub download that fails later."""
    from engines.prompts import resolve_model_path

    model = config.policy.model
    looks_local = model.startswith((".", "/", "~", "models/")) or model.count("/") > 1
    if config.policy.engine != "openai" and looks_local and not Path(resolve_model_path(model)).exists():
        raise ConfigError(f"policy.model: no model folder at {model!r}")


def run(config: Config, output: str, beam_args: list[str] | None = None) -> dict[str, Any]:
    """Run a synthesize job to completion and write its manifest; returns the manifest."""
    check_input(config.input)
    check_model(config)
    if FileSystems.exists(FileSystems.join(output, "manifest.json")):
        FileSystems.delete([FileSystems.join(output, "manifest.json")])  # a rerun is unfinished until it ends
    started = time.time()
    options = pipeline_options(beam_args or [])
    pipeline = beam.Pipeline(options=options)
    build(pipeline, config, output)
    result = pipeline.run()
    result.wait_until_finish()
    wall = time.time() - started
    return manifest_lib.write_manifest(output, config, counters(result), wall_seconds=wall, command="synthesize")
