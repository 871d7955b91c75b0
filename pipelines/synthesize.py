"""The `synthesize` pipeline: read -> search -> judge (optional) -> verify -> label -> filter -> augment -> write.

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
from pipelines.pins import pin_revisions
from schemas import tables
from schemas.config import Config, ConfigError
from transforms import evidence as E
from transforms.augment import AugmentPaths
from transforms.filter import FILTERED, FilterPaths
from transforms.judge import CRITIQUES, JudgePaths
from transforms.label import LabelPaths, label_setting
from transforms.read import DEAD, PROBLEMS, ReadProblems, check_input
from transforms.search import EVIDENCE, STATS, SearchProblems, omegaprm_config
from transforms.verify import VERDICTS, VerifyPaths
from transforms.write import WriteDeadLetters, WriteShards

log = logging.getLogger(__name__)

# Evidence tables: (tag, schema, sort key); each is written to `evidence/<tag>/`.
EVIDENCE_TABLES = {
    E.PROBLEMS: (tables.PROBLEMS, lambda r: r["problem_id"]),
    E.SOLUTIONS: (tables.SOLUTIONS, lambda r: f"{r['problem_id']}/{r['solution_index']:06d}"),
    E.COMPLETIONS: (
        tables.COMPLETIONS,
        lambda r: f"{r['problem_id']}/{r['solution_index']:06d}/{r['step_index']:04d}/{r['completion_index']:04d}",
    ),
    E.NODES: (tables.OMEGAPRM_NODES, lambda r: f"{r['problem_id']}/{r['node_id']:08d}"),
    E.SEARCH_PATHS: (tables.paths_schema(), lambda r: r["id"]),
    CRITIQUES: (tables.CRITIQUES, lambda r: f"{r['path_id']}/{r['critique_index']:04d}"),
    VERDICTS: (tables.VERDICTS, lambda r: f"{r['path_id']}/{r['annotator']}/{r['step_index']:04d}"),
}


def output_schema(config: Config):
    """The labelled-path table of a run: the base columns and those its annotators declare."""
    return tables.paths_schema(label_setting(config).columns())


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
    evidence = searched[EVIDENCE]
    dead = [read[DEAD], searched[DEAD]]
    shards = shard_writer(config, output)
    stats = [(searched[STATS], "engine_stats.json")]
    written = []
    if config.judge.enabled:
        judged = evidence | "Judge" >> JudgePaths(config, cache)
        evidence = judged["evidence"]
        dead.append(judged[DEAD])
        stats.append((judged[STATS], "judge_stats.json"))
        written.append(_write_evidence(judged[CRITIQUES], CRITIQUES, shards))
    stored = evidence | "Store evidence" >> E.EvidenceRows(config)
    dead.append(stored[DEAD])
    # Every run has the problems, solutions and completions tables (empty ones too); OmegaPRM adds its tree.
    used = (
        E.PROBLEMS,
        E.SOLUTIONS,
        E.COMPLETIONS,
        *((E.NODES, E.SEARCH_PATHS) if config.search.method == "omegaprm" else ()),
    )
    written.extend(_write_evidence(stored[tag], tag, shards) for tag in used)
    dead.extend(label_and_write(evidence, config, output))
    dead.extend(w[DEAD] for w in written)
    _ = (
        tuple(dead)
        | "Merge dead letters" >> beam.Flatten()
        | "Write dead letters" >> WriteDeadLetters(FileSystems.join(output, "dead_letters", "dead_letters.jsonl"))
    )
    for collection, name in stats:
        _ = (
            collection
            | f"Collect {name}" >> beam.combiners.ToList()
            | f"Write {name}" >> beam.Map(_write_json, FileSystems.join(output, "_work", name))
        )


def _meta_json() -> beam.PTransform:
    """Rows with `meta` as the JSON text the tables store: it stays a dict through label, filter and augment."""
    return beam.Map(lambda r: tables.with_meta_json(dict(r)))


def _write_evidence(rows: beam.PCollection, tag: str, shards) -> dict[str, beam.PCollection]:
    schema, key = EVIDENCE_TABLES[tag]
    return rows | f"Write {tag}" >> shards(f"evidence/{tag}", schema, key)


def label_and_write(evidence: beam.PCollection, config: Config, output: str) -> list[beam.PCollection]:
    """Verify, label, filter, augment and write the paths of `evidence` under `output` (synthesize and annotate
    alike); returns the stages' dead letters."""
    shards = shard_writer(config, output)
    dead = []
    if config.annotators:
        verified = evidence | "Verify" >> VerifyPaths(config)
        evidence = verified["evidence"]
        dead.extend([verified[DEAD], _write_evidence(verified[VERDICTS], VERDICTS, shards)[DEAD]])
    labelled = evidence | "Label" >> LabelPaths(config)
    filtered = labelled["paths"] | "Filter" >> FilterPaths(config)
    augmented = filtered["paths"] | "Augment" >> AugmentPaths(config)
    schema = output_schema(config)
    written = [
        augmented["paths"]
        | "Write paths" >> (_meta_json() | shards("data", schema, lambda r: r["id"], prefix="train")),
        filtered[FILTERED]
        | "Write filtered" >> (_meta_json() | shards("filtered", tables.filtered_schema(schema), lambda r: r["id"])),
    ]
    return [*dead, labelled[DEAD], filtered[DEAD], augmented[DEAD], *(w[DEAD] for w in written)]


def _write_json(items: list[dict[str, Any]], path: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(items, sort_keys=True).encode())


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = "FnApiRunner"  # Prism needs a download this network refuses (docs/infrastructure.md §2.2)
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


def pin(config: Config) -> tuple[Config, dict[str, Any]]:
    """The checked config with every Hub model and dataset pinned to a commit sha, and the pins (`pipelines/pins.py`).

    The pinned config is what runs and what is hashed: a rerun after the Hub repo moved gets another config hash,
    so another version folder and other cache keys (docs/infrastructure.md §4).
    """
    check(config)
    return pin_revisions(config)


def run(
    config: Config,
    output: str,
    beam_args: list[str] | None = None,
    *,
    cache: str | None = None,
    pins: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run a synthesize job to completion and write its manifest; returns the manifest.

    `cache` overrides where generated samples are cached (default: `cache_dir(config, output)`). `pins`: a config
    already pinned by `pin` (whose pins they are); None pins `config` here.
    """
    if pins is None:
        config, pins = pin(config)
    else:
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
    manifest = manifest_lib.write_manifest(
        output, config, counters(result), wall_seconds=wall, command="synthesize", pins=pins
    )
    finish_run(output)
    return manifest


def finish_run(output: str) -> None:
    """After the manifest: the dataset card of a local run folder (the command writes the HTML report after it)."""
    if "://" in output:
        log.info("remote run folder %s: build its card with `run.py publish --dry-run` after copying it", output)
        return
    from pipelines.card import write_dataset_card

    write_dataset_card(output)
