"""The dataset card: `README.md` in a finished run folder, the page the Hub shows and the config `datasets` reads.

    write_dataset_card(run_dir)  # -> run_dir/README.md

YAML front matter (license, tags, size category and the Hub's `configs` block that points the `default` config's
train split at `data/train-*.parquet`), then a body: what the dataset is, label statistics from the manifest, the
first-error position histogram computed from the shards, the config, the lineage and how to load it with
`datasets` and TRL 1.13.0's `PRMTrainer`. The text depends only on the run folder's files: no timestamps, so the
same run always gives the same card bytes.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from schemas.formats import TRL_SEPARATOR

SHARDS_GLOB = "data/train-*.parquet"  # the Hub's layout for one train split (docs/infrastructure.md §3.2)
EVIDENCE_GLOB = "evidence/{table}/part-*.parquet"
DEFAULT_LICENSE = "other"  # the terms follow the input problems and the policy model, which the run cannot know
# The Hub asks `license: other` for an id and a link (hub-docs datasetcard.md); the link is the card's own section.
DEFAULT_LICENSE_NAME = "inherited-from-sources"
DEFAULT_LICENSE_LINK = "README.md"
DEFAULT_TAGS = ("process-reward-model", "prm", "step-level-supervision", "synthetic", "stepforge")
REPO_PLACEHOLDER = "ORG/NAME"


@dataclass(frozen=True)
class CardTerms:
    """What the card says of the data's terms and origin: the Hub `license` (`license_name` and `license_link` name
    and link an `other` one) and `source_datasets` (None: derived from the manifest's input)."""

    license: str = DEFAULT_LICENSE
    license_name: str | None = None
    license_link: str | None = None
    sources: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.license_name or DEFAULT_LICENSE_NAME

    @property
    def link(self) -> str:
        return self.license_link or DEFAULT_LICENSE_LINK


DEFAULT_TERMS = CardTerms()


class RunNotFinishedError(FileNotFoundError):
    """The run folder has no `manifest.json`: the pipeline did not finish (the manifest is written last)."""


def read_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run's manifest; `RunNotFinishedError` when there is none (docs/infrastructure.md §3.2: manifest = done)."""
    run = Path(run_dir)
    if "://" in str(run_dir):
        raise ValueError(f"{run_dir}: cards and publishing work on a local run folder; copy it here first")
    path = run / "manifest.json"
    if not path.is_file():
        raise RunNotFinishedError(
            f"{run}: no manifest.json, so the run is unfinished (the manifest is written last); "
            "wait for it to finish or rerun it"
        )
    manifest = json.loads(path.read_text())
    if not isinstance(manifest, dict) or "stepforge_manifest" not in manifest:
        raise ValueError(f"{path}: not a StepForge manifest (no `stepforge_manifest` key)")
    return manifest


def default_version(manifest: dict[str, Any]) -> str:
    """`v<schema_version>-<config_hash[:12]>`: one version per schema and config (docs/infrastructure.md §3.2)."""
    return f"v{manifest['schema_version']}-{manifest['config_hash'][:12]}"


def _public_location(value: Any) -> Any:
    """A file's name instead of where it lay on the machine that ran: `/home/me/data/gsm8k.jsonl` -> `gsm8k.jsonl`."""
    if not isinstance(value, str) or not value:
        return value
    return value.rstrip("/").rsplit("/", 1)[-1] or value


def _is_local_path(value: Any) -> bool:
    return isinstance(value, str) and "://" not in value and (os.path.isabs(value) or value.startswith((".", "~")))


def public_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as it may be published: no path of the machine that ran it (input files, local models and runs).

    `input.path` keeps its file name; a local dataset folder, a local model and the parent run keep their names;
    hub ids (`org/name`) stay as they are. `config_hash` is still the hash of the full config.
    """
    public = json.loads(json.dumps(manifest))  # deep copy: the run's own manifest is never touched
    config = public.get("config") or {}
    source = config.get("input") or {}
    if source.get("path"):
        source["path"] = _public_location(source["path"])  # local or a bucket: only the file name says anything
    dataset = source.get("dataset") or {}
    for section, key in (("dataset", "name"), ("policy", "model"), ("cache", "dir")):
        holder = dataset if section == "dataset" else config.get(section) or {}
        if _is_local_path(holder.get(key)):
            holder[key] = _public_location(holder[key])
    judge_engine = (config.get("judge") or {}).get("engine") or {}
    if _is_local_path(judge_engine.get("model")):
        judge_engine["model"] = _public_location(judge_engine["model"])
    engine = public.get("engine") or {}
    if _is_local_path(engine.get("model")):
        engine["model"] = _public_location(engine["model"])
    lineage = public.get("lineage") or {}
    for key in ("parent_run", "evidence"):
        if isinstance(lineage.get(key), str):
            lineage[key] = _public_location(lineage[key])
    imported = public.get("import") or {}
    if _is_local_path(imported.get("source")):
        imported["source"] = _public_location(imported["source"])
    return public


def source_datasets(manifest: dict[str, Any]) -> list[str]:
    """The card's `source_datasets`: the input's hub id, `original` for generated problems, else `extended|other`."""
    source = (manifest.get("config") or {}).get("input") or {}
    name = (source.get("dataset") or {}).get("name")
    if name and not _is_local_path(name):
        return [name]  # a Hub dataset: its id is the source
    if source.get("format") == "generated" or (source.get("domain") in ("arithmetic", "chains")):
        return ["original"]  # problems generated by StepForge itself
    return ["extended|other"]  # problems from a file: derived from data the card cannot name


def shard_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The run's labelled-path shards, sorted by name."""
    return sorted(Path(run_dir).glob(SHARDS_GLOB))


def evidence_tables(evidence_dir: str | os.PathLike[str] | None) -> list[str]:
    """Names of the tables in an `evidence/` folder that have part files (`<table>/part-*.parquet`)."""
    root = Path(evidence_dir) if evidence_dir else None
    if root is None or not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir() and any(d.glob("part-*.parquet")))


def evidence_dir(run_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> Path | None:
    """The run's own `evidence/`, or its parent run's when it was relabelled from one (`manifest.lineage`)."""
    own = Path(run_dir) / "evidence"
    if evidence_tables(own):
        return own
    parent = (manifest.get("lineage") or {}).get("parent_run")
    if parent and "://" not in str(parent) and evidence_tables(Path(parent) / "evidence"):
        return Path(parent) / "evidence"
    return None


@dataclass
class ShardStats:
    """What the card reports from the shards themselves (the manifest has no histogram)."""

    files: int = 0
    rows: int = 0
    steps: int = 0
    steps_positive: int = 0
    first_error: Counter = field(default_factory=Counter)  # first_error_index -> paths; -1 = no error, None = unknown
    steps_with_separator: int = 0


def shard_stats(run_dir: str | os.PathLike[str]) -> ShardStats:
    """Rows, steps, positives, the first-error histogram and steps holding TRL's separator, batch by batch."""
    stats = ShardStats()
    for path in shard_files(run_dir):
        stats.files += 1
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(columns=["labels", "first_error_index", "completions"]):
            stats.rows += batch.num_rows
            labels = pc.list_flatten(batch.column("labels"))
            stats.steps += len(labels)
            stats.steps_positive += int(pc.sum(labels.cast("int64")).as_py() or 0)
            stats.first_error.update(batch.column("first_error_index").to_pylist())
            steps = pc.list_flatten(batch.column("completions"))
            if len(steps):
                hits = pc.match_substring(steps, TRL_SEPARATOR)
                stats.steps_with_separator += int(pc.sum(hits.cast("int64")).as_py() or 0)
    return stats


def _size_category(rows: int) -> str:
    """The Hub's `size_categories` bucket for a row count."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
    ]
    for bound, name in bounds:
        if rows < bound:
            return name
    return "1B<n<10B"


def hub_configs(evidence: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The `configs` YAML block: `default` = the shards' train split, plus one config per published evidence table."""
    configs: list[dict[str, Any]] = [
        {"config_name": "default", "data_files": [{"split": "train", "path": SHARDS_GLOB}]}  # docs/infrastructure.md §5
    ]
    for table in evidence:
        configs.append(
            {
                "config_name": f"evidence_{table}",
                "data_files": [{"split": "train", "path": EVIDENCE_GLOB.format(table=table)}],
            }
        )
    return configs


def front_matter(
    manifest: dict[str, Any],
    rows: int,
    *,
    terms: CardTerms,
    tags: Sequence[str],
    evidence: Sequence[str],
) -> str:
    """The card's YAML metadata, through `DatasetCardData` so the Hub's field names are the library's own."""
    from huggingface_hub import DatasetCardData

    name = (manifest.get("config") or {}).get("run", {}).get("name") or "stepforge"
    other = {}
    if terms.license == "other":  # the Hub's metadata spec: `other` names its license and links to its text
        other = {"license_name": terms.name, "license_link": terms.link}
    data = DatasetCardData(
        license=terms.license,
        **other,
        annotations_creators=["machine-generated"],  # labels come from policy rollouts, verifiers and judges
        source_datasets=list(terms.sources) if terms.sources else source_datasets(manifest),
        pretty_name=f"StepForge {name} ({default_version(manifest)})",
        tags=list(tags),
        task_categories=["token-classification"],  # PRMs are trained as per-token classifiers (TRL PRMTrainer)
        size_categories=[_size_category(rows)],
        configs=hub_configs(evidence),
    )
    return data.to_yaml()


def _ratio(part: int, whole: int) -> str:
    return f"{part / whole:.4f}" if whole else "n/a"


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _yaml_block(value: Any) -> str:
    return "```yaml\n" + yaml.safe_dump(value, sort_keys=True, default_flow_style=False, allow_unicode=True) + "```"


def _histogram(first_error: Counter, rows: int) -> list[str]:
    lines = ["| first error at step | paths | share |", "|---:|---:|---:|"]
    known = sorted(k for k in first_error if k is not None and k >= 0)
    for index in known:
        lines.append(f"| {index} | {first_error[index]} | {_ratio(first_error[index], rows)} |")
    lines.append(f"| none (all steps correct) | {first_error.get(-1, 0)} | {_ratio(first_error.get(-1, 0), rows)} |")
    if first_error.get(None):
        lines.append(f"| unknown | {first_error[None]} | {_ratio(first_error[None], rows)} |")
    return lines


def _description(manifest: dict[str, Any]) -> str:
    config = manifest.get("config") or {}
    if config:
        policy = config.get("policy", {})
        search = config.get("search", {})
        label = config.get("label", {})
        how = (
            f"Each row is one solution sampled from the policy `{policy.get('model', '?')}`"
            f" (engine `{policy.get('engine', '?')}`), cut into steps; every step carries a hard label (`labels`)"
            f" and, where measured, its Monte Carlo estimate (`mc_values`: the share of completions from the prefix"
            f" that reach the reference answer). Search: `{search.get('method', '?')}` with"
            f" {search.get('num_solutions', '?')} solutions per problem and {search.get('completions_per_step', '?')}"
            f" completions per step; hard rule: `{label.get('hard_rule', '?')}`."
        )
    elif manifest.get("import"):
        source = manifest["import"]
        how = (
            f"Each row is one labelled solution imported from `{source.get('format', '?')}` records"
            f" (`{source.get('source', '?')}`) and written in StepForge's labelled-path schema."
        )
    else:
        how = "Each row is one labelled solution in StepForge's labelled-path schema."
    return (
        "Step-level supervision for process reward models (PRMs), synthesized by StepForge.\n\n"
        f"{how}\n\n"
        "The columns `prompt`, `completions` (the steps) and `labels` (one bool per step) are TRL's stepwise-"
        "supervision format; `first_error_index` is the first step labelled wrong (-1 when every step is right), "
        "and `meta` (JSON) keeps seeds, search statistics and verifier reasons."
    )


def render_card(
    run_dir: str | os.PathLike[str],
    *,
    repo_id: str | None = None,
    version: str | None = None,
    terms: CardTerms = DEFAULT_TERMS,
    tags: Sequence[str] = DEFAULT_TAGS,
    evidence: Sequence[str] = (),
) -> str:
    """The card's text for a finished run (see `write_dataset_card`)."""
    manifest = public_manifest(read_manifest(run_dir))  # the card is published: no local path in it
    stats = shard_stats(run_dir)
    counts = manifest.get("counts", {})
    repo = repo_id or REPO_PLACEHOLDER
    revision = version or default_version(manifest)
    steps = counts.get("steps", stats.steps)
    positive = counts.get("steps_positive", stats.steps_positive)
    negative = counts.get("steps_negative", steps - positive)
    paths = counts.get("paths", stats.rows)
    engine = manifest.get("engine") or {}
    omegaprm = engine.get("omegaprm_counters") or {}

    meta = front_matter(manifest, paths, terms=terms, tags=tags, evidence=evidence)
    out = ["---", meta.rstrip("\n"), "---", ""]
    out += [f"# StepForge PRM data `{revision}`", "", _description(manifest), ""]
    if manifest.get("warnings"):  # a filter that dropped most of the run, labels almost all negative (manifest)
        out += ["## Warnings", "", *(f"- {line}" for line in manifest["warnings"]), ""]

    out += ["## Label statistics", "", "From the run's `manifest.json` (`counts`).", ""]
    out += ["| | |", "|---|---:|"]
    rows = [
        ("problems", counts.get("problems", counts.get("problems_labelled"))),
        ("problems labelled", counts.get("problems_labelled")),
        ("solutions sampled", counts.get("solutions")),
        ("labelled paths (rows)", paths),
        ("steps", steps),
        ("positive steps", positive),
        ("negative steps", negative),
        ("positive share", _ratio(positive, steps)),
        ("positive : negative", f"{_ratio(positive, negative)} : 1" if negative else "n/a"),
        ("completion rows (MC; a prefix shared by solutions is sampled once)", counts.get("completions")),
        ("sequences from the policy (generated or reused from the sample cache)", engine.get("sequences")),
        ("of them reused from the sample cache", engine.get("cache_sample_hits")),
        ("OmegaPRM binary searches", omegaprm.get("searches")),
        ("OmegaPRM searches stopped by the rollout budget", omegaprm.get("searches_incomplete")),
        # Probes decided without sampling, by the measurements around them (docs/omegaprm.md, "Implied probes").
        ("OmegaPRM probes skipped (they extend a prefix measured at MC = 0)", omegaprm.get("probes_implied_zero")),
        ("OmegaPRM probes skipped (a prefix measured at MC > 0 extends them)", omegaprm.get("probes_implied_positive")),
        (
            "OmegaPRM correct rollouts not emitted (they pass a prefix measured at MC = 0)",
            omegaprm.get("positive_paths_contradicted"),
        ),
        ("paths filtered out", counts.get("filtered")),
        ("input rows past input.limit (not read)", counts.get("beyond_limit") or None),
        ("dead letters", counts.get("dead_lettered")),
        ("problems dead-lettered after reading", counts.get("problems_dead_lettered")),
        ("counts add up", counts.get("balanced")),
    ]
    out += [f"| {name} | {value} |" for name, value in rows if value is not None]
    out.append("")
    for key, title in (
        ("filtered_by_reason", "Filtered by reason"),
        ("dead_letters_by_reason", "Dead letters by reason"),
        ("dead_letters_by_stage", "Dead letters by stage"),
    ):
        if counts.get(key):
            out.append(f"{title}: `{_json(counts[key])}`")
            out.append("")

    out += ["### First-error position", "", f"Computed from the {stats.files} shard file(s), {stats.rows} paths.", ""]
    out += _histogram(stats.first_error, stats.rows)
    out.append("")

    out += ["## Files", ""]
    out.append(f"- `{SHARDS_GLOB}`: {stats.files} shard(s), the `default` config's `train` split")
    out.append("- `manifest.json`: the run's config, counts, engine and timings (written last by the pipeline)")
    for table in evidence:
        out.append(f"- `{EVIDENCE_GLOB.format(table=table)}`: evidence table `{table}` (config `evidence_{table}`)")
    out.append("")

    out += ["## Config", ""]
    if manifest.get("config"):
        out += [
            "The full run config (the config hash is the sha256 of its data keys; local paths are shown by file name).",
            "",
            _yaml_block(manifest["config"]),
        ]
    elif manifest.get("import"):
        out += ["The import settings.", "", _yaml_block(manifest["import"])]
    else:
        out.append("The manifest records no config.")
    out.append("")

    out += ["## Lineage", "", "| | |", "|---|---|"]
    out.append(f"| config hash | `{manifest.get('config_hash')}` |")
    out.append(f"| code version | `{manifest.get('code_version')}` |")
    out.append(f"| schema version | `{manifest.get('schema_version')}` |")
    out.append(f"| command | `{manifest.get('command')}` |")
    if engine.get("model"):
        revision_note = f" (revision `{engine['revision']}`)" if engine.get("revision") else ""
        out.append(f"| policy model | `{engine['model']}`{revision_note} |")
    if engine.get("model_sha256"):
        out.append(f"| policy weights sha256 | `{engine['model_sha256']}` |")
    if engine.get("generated_tokens") is not None:
        unit = engine.get("fill_unit", "call")  # step: the request-level driver counts engine steps
        out.append(
            f"| generated tokens | {engine['generated_tokens']} in {engine.get('engine_calls')} engine {unit}s |"
        )
    lineage = manifest.get("lineage") or {}
    for key, value in sorted(lineage.items()):
        if value is not None and not isinstance(value, dict | list):
            out.append(f"| lineage: {key} | `{value}` |")
    out.append("")
    if lineage.get("parent_run"):
        out.append("Relabelled from the evidence of the parent run above (no new generation); the full lineage record:")
        out += ["", _yaml_block(lineage), ""]
    else:
        out += ["A fresh run: the evidence behind these labels was generated by this run.", ""]

    out += ["## License", ""]
    if terms.license == "other":
        out.append(
            f"`{terms.name}`: these rows are derived from the input problems "
            f"(`{', '.join(terms.sources or source_datasets(manifest))}`) and generated by the policy model above, so their "
            "terms are those of both; check the licenses of the problems and of the model before use."
        )
    else:
        out.append(f"`{terms.license}`.")
    out.append("")

    out += ["## Load it", "", "```python", "from datasets import load_dataset", ""]
    out.append(f'dataset = load_dataset("{repo}", revision="{revision}", split="train")')
    out += ["```", ""]
    out.append(
        f"`{revision}` is a tag: it names the commit that holds exactly these files. "
        "Streaming works too (`streaming=True`)."
    )
    out += [
        "",
        "Train a PRM with TRL 1.13.0 (`PRMTrainer` keeps `prompt`, `completions`, `labels` and drops the rest):",
        "",
    ]
    out += [
        "```python",
        "from datasets import load_dataset",
        "from transformers import AutoModelForTokenClassification, AutoTokenizer",
        "from trl.experimental.prm import PRMConfig, PRMTrainer",
        "",
        f'dataset = load_dataset("{repo}", revision="{revision}", split="train")',
        'base = "Qwen/Qwen2.5-0.5B"  # any causal LM with a token-classification head',
        "tokenizer = AutoTokenizer.from_pretrained(base)",
        "model = AutoModelForTokenClassification.from_pretrained(base, num_labels=2)",
        'args = PRMConfig(output_dir="prm", step_separator="\\n")',
        "trainer = PRMTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)",
        "trainer.train()",
        "```",
        "",
    ]
    if stats.steps_with_separator:
        out.append(
            f"{stats.steps_with_separator} step(s) contain a newline, TRL's default `step_separator`: replace it "
            "inside the steps before training (`python run.py export RUN --format trl` does that and counts it) or set "
            "`PRMConfig(step_separator=...)` to a string that no step contains."
        )
    else:
        out.append('No step contains a newline, so TRL\'s default `step_separator` (`"\\n"`) is unambiguous here.')
    out.append("")
    return "\n".join(out)


def write_dataset_card(
    run_dir: str | os.PathLike[str],
    *,
    repo_id: str | None = None,
    version: str | None = None,
    terms: CardTerms = DEFAULT_TERMS,
    tags: Sequence[str] = DEFAULT_TAGS,
    evidence: Sequence[str] = (),
) -> Path:
    """Write `README.md` (the dataset card) in a finished run folder and return its path.

    `repo_id`/`version` fill the loading snippets (default `ORG/NAME` and `v<schema>-<config_hash[:12]>`);
    `evidence` names evidence tables that are published beside the shards, each given its own Hub config.
    Raises `RunNotFinishedError` without `manifest.json`.
    """
    text = render_card(
        run_dir,
        repo_id=repo_id,
        version=version,
        terms=terms,
        tags=tags,
        evidence=evidence,
    )
    path = Path(run_dir) / "README.md"
    temp = path.with_name(f".README.md.tmp-{os.getpid()}")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)  # a reader never sees half a card
    return path
