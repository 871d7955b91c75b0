"""`manifest.json`: written last, it marks a finished run and records what the run was and what it produced.

Counts come from the files the run wrote (authoritative) and from Beam counters (rows read, rows past
`input.limit`, blank input lines skipped, tokens); the accounting identity (rows read = rows past the limit + read dead letters + problems,
and every problem labelled or dead-lettered later) is checked and recorded under `counts.balanced`. A filter that
drops more than `DROP_WARNING_SHARE` of a run's rows is a line under `warnings` (`retention_warnings`), and so are
labels that are almost all negative (fewer than `POSITIVE_WARNING_SHARE` of the labelled steps positive); the run
summary, the report and the dataset card repeat them.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from annotators import run_cost
from engines.handler import model_fingerprint
from schemas.config import Config, ConfigError
from schemas.tables import SCHEMA_VERSION
from storage import glob, read_bytes
from transforms.dead_letters import problem_id_of

REPO_ROOT = Path(__file__).resolve().parents[1]
DROP_WARNING_SHARE = 0.9  # a filter dropping more than this share of a run's rows is a warning
# Fewer positive steps than this share is a warning: a PRM learns little from labels that are nearly all negative
# (SmolLM2-135M on GSM8K: 3 of 153, issue 18).
POSITIVE_WARNING_SHARE = 0.05


def code_version() -> str:
    """The git commit of the code (with `-dirty` when it has local changes), or `unknown` outside a checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def finished_run(run: str | Path, option: str) -> Path:
    """`run` as a local finished run folder, or a ConfigError naming `option` and what is missing there."""
    folder = Path(run)
    if not folder.is_dir():
        raise ConfigError(f"{option} {run}: no such run folder")
    if not (folder / "manifest.json").is_file():
        raise ConfigError(f"{option} {run}: no manifest.json there, so it is not a finished run")
    return folder


def _parquet_stats(pattern: str, columns: list[str]) -> tuple[int, list[dict[str, Any]]]:
    rows = 0
    data: list[dict[str, Any]] = []
    for path in glob(pattern):
        with FileSystems.open(path) as handle:
            table = pq.read_table(handle, columns=columns or None)
        rows += table.num_rows
        if columns:
            data.extend(table.to_pylist())
    return rows, data


def count_outputs(output: str, evidence_run: str | None = None) -> dict[str, Any]:
    """Counts from the files under `output` (evidence from `evidence_run` when the run reused another's)."""
    evidence_run = evidence_run or output
    paths_rows, paths = _parquet_stats(
        FileSystems.join(output, "data", "train-*.parquet"), ["id", "problem_id", "labels", "source"]
    )
    filtered_rows, filtered = _parquet_stats(
        FileSystems.join(output, "filtered", "part-*.parquet"), ["problem_id", "drop_reason", "source"]
    )
    solutions, _ = _parquet_stats(FileSystems.join(evidence_run, "evidence", "solutions", "part-*.parquet"), [])
    completions, _ = _parquet_stats(FileSystems.join(evidence_run, "evidence", "completions", "part-*.parquet"), [])
    dead_path = FileSystems.join(output, "dead_letters", "dead_letters.jsonl")
    dead = [json.loads(line) for line in read_bytes(dead_path).decode().splitlines() if line.strip()]
    steps = sum(len(r["labels"]) for r in paths)
    positives = sum(sum(r["labels"]) for r in paths)
    labelled = {r["problem_id"] for r in paths + filtered}
    # A problem dead-lettered after reading (all of it, or each of its paths) and with no row written; a dead
    # letter whose row names no problem counts as one, so it can only make the counts not add up.
    unnamed = 0
    dead_problems: set[str] = set()
    for letter in dead:
        if letter["stage"] != "read":
            problem_id = problem_id_of(letter)
            if problem_id is None:
                unnamed += 1
            elif problem_id not in labelled:
                dead_problems.add(problem_id)
    return {
        "paths": paths_rows,
        "problems_labelled": len(labelled),
        "problems_dead_lettered": len(dead_problems) + unnamed,
        "filtered": filtered_rows,
        "filtered_by_reason": dict(sorted(Counter(r["drop_reason"].split(":")[0] for r in filtered).items())),
        "retention_by_source": _retention(paths, filtered),
        "filter_drops": _filter_drops(paths, filtered),
        "steps": steps,
        "steps_positive": positives,
        "steps_negative": steps - positives,
        "solutions": solutions,
        "completions": completions,
        "dead_lettered": len(dead),
        "dead_letters_by_stage": dict(sorted(Counter(d["stage"] for d in dead).items())),
        "dead_letters_by_reason": dict(sorted(Counter(d["reason"].split(":")[0] for d in dead).items())),
    }


def _retention(kept: list[dict[str, Any]], dropped: list[dict[str, Any]]) -> dict[str, Any]:
    sources = sorted({r["source"] for r in kept + dropped})
    out = {}
    for source in sources:
        k = sum(1 for r in kept if r["source"] == source)
        d = sum(1 for r in dropped if r["source"] == source)
        out[source] = {"kept": k, "dropped": d, "retention": round(k / (k + d), 4) if k + d else None}
    return out


def _filter_drops(kept: list[dict[str, Any]], dropped: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows that reached the filters (kept originals, not augmented copies, plus filtered), drops per filter."""
    originals = [r for r in kept if not str(r["id"]).endswith("/hnc")]  # compression copies are not retention
    return {
        "rows": len(originals) + len(dropped),
        "kept": len(originals),
        "by_filter": dict(sorted(Counter(r["drop_reason"].split(":")[0] for r in dropped).items())),
        "by_source": _retention(originals, dropped),
    }


def _annotator_retention(output: str, config: Config) -> dict[str, Any] | None:
    """Per consensus annotator, its agreement with MC over the rows consensus saw (None when consensus is off)."""
    from annotators.consensus import retention_by_annotator
    from transforms.filter import consensus_config

    consensus = consensus_config(config)
    if consensus is None:
        return None
    columns = ["id", "first_error_index", *(f"{n}_labels" for n in consensus.annotators if n != "mc")]
    rows: list[dict[str, Any]] = []
    for folder, pattern in (("data", "train-*.parquet"), ("filtered", "part-*.parquet")):
        for path in glob(FileSystems.join(output, folder, pattern)):
            with FileSystems.open(path) as handle:
                present = [c for c in columns if c in pq.read_schema(handle).names]
            with FileSystems.open(path) as handle:
                rows.extend(pq.read_table(handle, columns=present).to_pylist())
    originals = [r for r in rows if not str(r.get("id", "")).endswith("/hnc")]
    return retention_by_annotator(originals, consensus)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def retention_warnings(counts: dict[str, Any], share: float = DROP_WARNING_SHARE) -> list[str]:
    """One line per filter (and for all filters together) that dropped more than `share` of the run's rows, and one
    when fewer than POSITIVE_WARNING_SHARE of the labelled steps are positive (`positive_share_warning`).

    Reads `counts["filter_drops"]` and, when present, `counts["retention_by_annotator"]`; each line names the
    retention by source and, for consensus, each annotator's agreement with MC, so the line says where to look.
    """
    warnings = _filter_warnings(counts, share)
    positive = positive_share_warning(counts)
    return warnings + [positive] if positive else warnings


def positive_share_warning(counts: dict[str, Any], share: float = POSITIVE_WARNING_SHARE) -> str | None:
    """A line when fewer than `share` of the labelled steps (`counts["steps"]`, `["steps_positive"]`) are positive."""
    steps = counts.get("steps") or 0
    positives = counts.get("steps_positive") or 0
    if not steps or positives >= share * steps:
        return None
    return (
        f"only {positives} of {steps} labelled steps are positive ({_percent(positives, steps)}, under "
        f"{100 * share:g}%): the policy rarely reaches the gold answer, so the labels say little; check the "
        "verdict reasons in evidence/solutions, or use a stronger policy or more samples per step"
    )


def _filter_warnings(counts: dict[str, Any], share: float) -> list[str]:
    drops = counts.get("filter_drops") or {}
    rows = drops.get("rows", 0)
    by_filter = drops.get("by_filter") or {}
    if not rows:
        return []
    offenders = [(name, dropped) for name, dropped in by_filter.items() if dropped > share * rows]
    total_dropped = sum(by_filter.values())
    if len(by_filter) > 1 and total_dropped > share * rows:
        offenders.append((" + ".join(by_filter), total_dropped))
    sources = ", ".join(
        f"{source or '(none)'} {entry['kept']}/{entry['kept'] + entry['dropped']}"
        for source, entry in (drops.get("by_source") or {}).items()
    )
    annotators = counts.get("retention_by_annotator") or {}
    agreement = ", ".join(
        f"{name} {entry['agree']}/{entry['total']} ({entry['disagree']} disagree, {entry['abstain']} no verdict)"
        for name, entry in annotators.items()
    )
    warnings = []
    for name, dropped in offenders:
        line = (
            f"filter {name} dropped {dropped} of {rows} rows ({_percent(dropped, rows)}); "
            f"kept {rows - total_dropped}; kept by source: {sources or 'none'}"
        )
        if agreement and "consensus" in name:
            line += f"; agreement with MC by annotator: {agreement}"
        warnings.append(line)
    return warnings


def _columns(output: str) -> list[str]:
    """The label columns of a run's paths (the annotator columns depend on its config)."""
    paths = glob(FileSystems.join(output, "data", "train-*.parquet"))
    if not paths:
        return []
    with FileSystems.open(paths[0]) as handle:
        names = pq.read_schema(handle).names
    return [n for n in names if n in ("prompt", "completions", "labels") or n.endswith("_labels")]


def engine_stats(output: str, capacity: int) -> dict[str, Any]:
    path = FileSystems.join(output, "_work", "engine_stats.json")
    if not FileSystems.exists(path):
        return {}
    batches = json.loads(read_bytes(path))
    calls = [s for b in batches for s in b["call_sequences"]]  # per engine call, or per step (request level)
    units = sorted({b.get("unit", "call") for b in batches})
    fills = sorted(min(1.0, s / capacity) for s in calls) or [0.0]
    engine_seconds = sum(b["engine_seconds"] for b in batches)
    tokens = sum(b["generated_tokens"] for b in batches)
    # What the engine itself generated: cached samples count in `generated_tokens` but took no engine time.
    engine_tokens = sum(b.get("engine_generated_tokens", b["generated_tokens"]) for b in batches)
    hits = sum(b.get("cache_hits", 0) for b in batches)
    misses = sum(b.get("cache_misses", 0) for b in batches)
    judge_path = FileSystems.join(output, "_work", "judge_stats.json")
    judged = json.loads(read_bytes(judge_path)) if FileSystems.exists(judge_path) else []
    judge_tokens = sum(b["generated_tokens"] for b in judged)
    omegaprm: Counter[str] = Counter()
    for b in batches:
        omegaprm.update(b.get("omegaprm") or {})
    return {
        **({"omegaprm_counters": dict(sorted(omegaprm.items()))} if omegaprm else {}),
        "cache_sample_hits": hits,
        "cache_sample_misses": misses,
        "cache_hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
        "judge_generated_tokens": judge_tokens,
        "engine_calls": len(calls),
        "fill_unit": "/".join(units) or "call",
        "sequences": sum(b.get("sequences", sum(b["call_sequences"])) for b in batches),  # older files: calls
        "generated_tokens": tokens,
        "engine_seconds": round(engine_seconds, 3),
        "engine_generated_tokens": engine_tokens,
        "engine_tokens_per_second": round(engine_tokens / engine_seconds, 1) if engine_seconds else 0.0,
        "mean_sequences_per_call": round(sum(calls) / len(calls), 1) if calls else 0.0,
        "batch_fill_mean": round(sum(fills) / len(fills), 4),
        "batch_fill_p10": round(fills[int(0.1 * (len(fills) - 1))], 4),
        "batch_capacity": capacity,
    }


def write_manifest(
    output: str,
    config: Config,
    counters: dict[str, float],
    *,
    wall_seconds: float,
    command: str,
    lineage: dict[str, Any] | None = None,
    pins: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write `manifest.json` under `output`; `pins` are the Hub references the run pinned to commit shas
    (`pipelines/pins.py`), whose shas are the `revision`s of `config`."""
    counts = count_outputs(output, (lineage or {}).get("parent_run"))
    rows_read = int(counters.get("read.rows_read", 0))
    beyond_limit = int(counters.get("read.beyond_limit", 0))  # rows past input.limit: not read into problems
    by_stage = counts["dead_letters_by_stage"]
    problems = rows_read - beyond_limit - by_stage.get("read", 0)
    counts = {"read": rows_read, "beyond_limit": beyond_limit, "problems": problems, **counts}
    counts["blank_lines"] = int(counters.get("read.blank_lines", 0))  # skipped input lines: no row, no dead letter
    # Every problem read ends labelled (a row in data/ or filtered/) or dead-lettered at a later stage.
    counts["balanced"] = problems == counts["problems_labelled"] + counts["problems_dead_lettered"]
    annotator_retention = _annotator_retention(output, config)
    if annotator_retention is not None:
        counts["retention_by_annotator"] = annotator_retention
    # Fill against what the engine runs at once (vLLM's max_num_seqs), not the driver's larger packing limit.
    capacity = min(config.search.max_sequences_per_call, config.policy.max_num_seqs)
    engine = engine_stats(output, capacity) or {"engine_calls": 0, "generated_tokens": 0}
    tokens = engine.get("generated_tokens", int(counters.get("search.generated_tokens", 0)))
    quality = None
    if config.input.domain in ("arithmetic", "chains"):  # chains are arithmetic expressions without products
        from annotators.exact import exact_quality

        _, rows = _parquet_stats(FileSystems.join(output, "data", "train-*.parquet"), list(_columns(output)))
        quality = {"exact_arithmetic": exact_quality(rows)} if rows else None
    manifest = {
        "stepforge_manifest": 1,
        "command": command,
        "schema_version": SCHEMA_VERSION,
        "code_version": code_version(),
        "config_hash": config.config_hash(),
        "config": config.to_dict(),
        "engine": {
            "engine": config.policy.engine,
            "model": config.policy.model,
            "revision": config.policy.revision,
            "model_sha256": model_fingerprint(config.policy.model),
            **engine,
        },
        "counts": counts,
        "warnings": retention_warnings(counts),
        "timings": {
            "wall_seconds": round(wall_seconds, 3),
            "generated_tokens_per_second": round(tokens / wall_seconds, 1) if wall_seconds else 0.0,
        },
        "lineage": lineage or {"parent_run": None},
        "pins": pins or {},
        "label_quality": quality,
        "outputs": {
            "paths": "data/train-*.parquet",
            "solutions": "evidence/solutions/part-*.parquet",
            "completions": "evidence/completions/part-*.parquet",
            "dead_letters": "dead_letters/dead_letters.jsonl",
        },
    }
    # What the run spent, in `stepforge estimate`'s terms, so a finished run calibrates the next estimate.
    manifest["spend"] = run_cost.spend(manifest["engine"], counts)
    with FileSystems.create(FileSystems.join(output, "manifest.json")) as handle:
        handle.write((json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest
