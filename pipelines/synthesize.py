"""The `synthesize` pipeline: read problems -> search (+ judge) -> verify and label -> filter/augment -> write.

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
from transforms import label as L
from transforms.augment import AugmentRows
from transforms.read import DEAD, PROBLEMS, ReadProblems, check_input
from transforms.search import EVIDENCE, STATS, SearchProblems, omegaprm_config
from transforms.write import WriteDeadLetters, WriteShards

log = logging.getLogger(__name__)

# Evidence tables: (tag, folder, schema or None for the OmegaPRM node schema, sort key).
EVIDENCE_TABLES = [
    (L.PROBLEMS, "problems", tables.PROBLEMS, lambda r: r["problem_id"]),
    (L.SOLUTIONS, "solutions", tables.SOLUTIONS, lambda r: f"{r['problem_id']}/{r['solution_index']:06d}"),
    (
        L.COMPLETIONS,
        "completions",
        tables.COMPLETIONS,
        lambda r: f"{r['problem_id']}/{r['solution_index']:06d}/{r['step_index']:04d}/{r['completion_index']:04d}",
    ),
    (L.NODES, "omegaprm_nodes", None, lambda r: f"{r['problem_id']}/{r['node_id']:08d}"),
    (L.SEARCH_PATHS, "omegaprm_paths", tables.paths_schema(), lambda r: r["id"]),
    (L.CRITIQUES, "critiques", tables.CRITIQUES, lambda r: f"{r['path_id']}/{r['critique_index']:04d}"),
    (
        L.VERDICTS,
        "verdicts",
        tables.VERDICTS,
        lambda r: f"{r['path_id']}/{r['annotator']}/{r['step_index']:04d}",
    ),
]


def output_schema(config: Config):
    return tables.paths_schema(sorted(config.annotators), judge=config.judge.enabled, progress=config.progress.enabled)


def cache_dir(config: Config, output: str) -> str | None:
    """Where generated samples are cached: `cache.dir`, else `_cache` beside the run folder (shared by versions)."""
    if not config.cache.enabled:
        return None
    if config.cache.dir:
        return config.cache.dir
    parent = output.rstrip("/").rsplit("/", 1)[0] if "/" in output.rstrip("/") else "."
    return FileSystems.join(parent, "_cache")


def shard_writer(config: Config, output: str):
    """A factory of shard writers under `output` with the run's shard count and Parquet settings."""
    out = config.output

    def shards(folder: str, table_schema, key, prefix: str = "part") -> WriteShards:
        return WriteShards(
            FileSystems.join(output, *folder.split("/")),
            table_schema,
            key=key,
            num_shards=out.num_shards,
            compression=out.compression,
            row_group_size=out.row_group_size,
            prefix=prefix,
        )

    return shards


def build(pipeline: beam.Pipeline, config: Config, output: str, cache: str | None = None) -> None:
    """Add every stage of a synthesize run writing under `output` to `pipeline`."""
    read = pipeline | "Read problems" >> ReadProblems(config.input)
    searched = read[PROBLEMS] | "Search" >> SearchProblems(config, cache)
    labelled = searched[EVIDENCE] | "Label" >> L.LabelEvidence(config)
    augmented = labelled[L.PATHS] | "Filter and augment" >> AugmentRows(config)
    schema = output_schema(config)

    shards = shard_writer(config, output)

    written = [augmented["paths"] | "Write paths" >> shards("data", schema, lambda r: r["id"], prefix="train")]
    filtered = (labelled[L.FILTERED], augmented["filtered"]) | "Merge filtered" >> beam.Flatten()
    written.append(filtered | "Write filtered" >> shards("filtered", tables.filtered_schema(schema), lambda r: r["id"]))
    for tag, folder, table_schema, key in EVIDENCE_TABLES:
        if tag in (L.NODES, L.SEARCH_PATHS) and config.search.method != "omegaprm":
            continue
        if tag == L.NODES:
            from schemas.tables import OMEGAPRM_NODES as NODES_SCHEMA

            table_schema = NODES_SCHEMA
        if tag == L.CRITIQUES and not config.judge.enabled:
            continue
        if tag == L.VERDICTS and not config.annotators:
            continue
        written.append(labelled[tag] | f"Write {folder}" >> shards(f"evidence/{folder}", table_schema, key))
    dead = (
        read[DEAD],
        searched[DEAD],
        labelled[DEAD],
        augmented[DEAD],
        *(w[DEAD] for w in written),
    ) | "Merge dead letters" >> beam.Flatten()
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
    """Committed counter values keyed by `namespace.name`."""
    metrics = result.metrics().query(MetricsFilter())
    values: dict[str, float] = {}
    for counter in metrics["counters"]:
        key = f"{counter.key.metric.namespace}.{counter.key.metric.name}"
        values[key] = values.get(key, 0) + (counter.committed or 0)
    return values


def check_model(config: Config) -> None:
    """A local-looking model path that does not exist is a config error, not a hub download that fails later."""
    from engines.prompts import resolve_model_path

    engines = [("policy", config.policy)]
    if config.judge.enabled and config.judge.engine.model:
        engines.append(("judge.engine", config.judge.engine))
    for key, engine in engines:
        model = engine.model
        looks_local = model.startswith((".", "/", "~", "models/")) or model.count("/") > 1
        if engine.engine != "openai" and looks_local and not Path(resolve_model_path(model)).exists():
            hint = ""
            if model.rstrip("/").startswith("models/tiny-"):  # a bundled policy this checkout has not built yet
                hint = "; build it with `python -m models.build_tiny_model` (models/README.md has the recipes)"
            raise ConfigError(f"{key}.model: no model folder at {model!r}{hint}")


def check(config: Config) -> None:
    """Everything that can be checked before a pipeline starts."""
    check_input(config.input)
    check_model(config)
    if config.search.method == "omegaprm":
        omegaprm_config(config)


def run(config: Config, output: str, beam_args: list[str] | None = None, *, cache: str | None = None) -> dict[str, Any]:
    """Run a synthesize job to completion and write its manifest; returns the manifest.

    `cache` overrides where generated samples are cached (default: `cache_dir(config, output)`).
    """
    check(config)
    cache = cache or cache_dir(config, output)
    if FileSystems.exists(FileSystems.join(output, "manifest.json")):
        FileSystems.delete([FileSystems.join(output, "manifest.json")])  # a rerun is unfinished until it ends
    started = time.time()
    pipeline = beam.Pipeline(options=pipeline_options(beam_args or []))
    build(pipeline, config, output, cache)
    result = pipeline.run()
    result.wait_until_finish()
    wall = time.time() - started
    manifest = manifest_lib.write_manifest(output, config, counters(result), wall_seconds=wall, command="synthesize")
    finish_run(output)
    return manifest


def finish_run(output: str) -> None:
    """After the manifest: the dataset card and the HTML report of a local run folder."""
    if "://" in output:
        log.info("remote run folder %s: build its card with `run.py publish --dry-run` after copying it", output)
        return
    from pipelines.card import write_dataset_card
    from pipelines.report import write_report

    write_dataset_card(output)
    log.info("report: %s", write_report(output))
