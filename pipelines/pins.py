"""Pin every Hub reference of a run to a commit sha before the pipeline is built.

A Hub model id or dataset name with no revision (or a branch or tag) names whatever the Hub holds today, so the
engine fingerprint (`engines.handler.engine_fingerprint`, which has `revision`), the sample cache keys and the
rows read would not change when the repo does. `pin_revisions` asks the Hub (`HfApi.model_info` /
`dataset_info`) for the commit sha of the policy model, the judge's own model and a Hub `input.dataset`, and
returns the config with `revision` set to those shas: the run, its config hash (hence its version folder,
docs/infrastructure.md §4) and its manifest's `pins` all name exactly those commits.

Not looked up: local model folders (their weights are hashed instead), `openai` engines (a served model's name,
not a repo), local or remote dataset folders and files, and a revision that already is a 40-hex commit sha.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from engines.prompts import resolve_model_path
from schemas.config import Config, ConfigError, EngineConfig
from transforms.read import hub_dataset

COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
HUB_TIMEOUT_S = 10.0  # one metadata request; an unreachable Hub fails in seconds, never hangs a run


def hub_model(engine: EngineConfig) -> bool:
    """Whether the engine loads its model from the Hub: not an `openai` server's model name, and no local folder."""
    return engine.engine != "openai" and bool(engine.model) and not Path(resolve_model_path(engine.model)).exists()


def hub_references(config: Config) -> list[tuple[str, str, str, str | None]]:
    """(key, repo type, repo id, requested revision) of each Hub reference of `config`."""
    found = []
    if hub_model(config.policy):
        found.append(("policy.model", "model", config.policy.model, config.policy.revision))
    if config.judge.enabled and config.judge.engine.model and hub_model(config.judge.engine):
        found.append(("judge.engine.model", "model", config.judge.engine.model, config.judge.engine.revision))
    dataset = hub_dataset(config.input)
    if dataset:
        found.append(("input.dataset", "dataset", dataset, config.input.dataset.revision))
    return found


def resolve_sha(key: str, repo_type: str, repo_id: str, revision: str | None) -> str:
    """The commit sha `revision` (None: the default branch) of a Hub repo; a full sha is kept without a lookup."""
    if revision and COMMIT_SHA.fullmatch(revision):
        return revision
    from huggingface_hub import HfApi

    api = HfApi()
    info = api.model_info if repo_type == "model" else api.dataset_info
    revision_key = "input.dataset.revision" if key == "input.dataset" else key.rsplit(".", 1)[0] + ".revision"
    try:
        sha = info(repo_id, revision=revision, timeout=HUB_TIMEOUT_S).sha
    except Exception as error:  # noqa: BLE001 - offline, unreachable, unknown repo or revision: one clear refusal
        raise ConfigError(
            f"{key}: cannot resolve the Hub {repo_type} {repo_id!r} at revision {revision or 'main'!r} to a commit "
            f"sha ({type(error).__name__}: {error}). A run pins every Hub reference so its cache and version folder "
            f"name exactly those files; when the Hub is unreachable or HF_HUB_OFFLINE is set, pin it by hand: "
            f"--set {revision_key}=<40-hex commit sha> (the repo's 'Files and versions' history lists them)"
        ) from error
    if not sha or not COMMIT_SHA.fullmatch(sha):
        raise ConfigError(f"{key}: the Hub answered no commit sha for {repo_type} {repo_id!r} at {revision!r}")
    return sha


def pin_revisions(config: Config) -> tuple[Config, dict[str, dict[str, Any]]]:
    """`config` with each Hub reference's `revision` set to its commit sha, and the pins for the manifest:
    `{key: {"repo", "repo_type", "requested", "sha"}}`. A config with no Hub reference comes back unchanged."""
    pins: dict[str, dict[str, Any]] = {}
    shas: dict[str, str] = {}
    for key, repo_type, repo_id, requested in hub_references(config):
        shas[key] = resolve_sha(key, repo_type, repo_id, requested)
        pins[key] = {"repo": repo_id, "repo_type": repo_type, "requested": requested, "sha": shas[key]}
    if not shas:
        return config, pins
    policy, judge, data = config.policy, config.judge, config.input
    if "policy.model" in shas:
        policy = dataclasses.replace(policy, revision=shas["policy.model"])
    if "judge.engine.model" in shas:
        judge = dataclasses.replace(
            judge, engine=dataclasses.replace(judge.engine, revision=shas["judge.engine.model"])
        )
    if "input.dataset" in shas:
        data = dataclasses.replace(data, dataset=dataclasses.replace(data.dataset, revision=shas["input.dataset"]))
    return dataclasses.replace(config, policy=policy, judge=judge, input=data), pins
