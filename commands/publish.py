"""`publish`: upload a finished run to the Hugging Face Hub as one dataset version, a branch plus a tag.

    stepforge publish RUN --repo ORG/NAME [--version V] [--branch B] [--dry-run] [--force]
                                              [--include-evidence] [--private] [--endpoint URL]

The token comes from `HF_TOKEN` (or the token `hf auth login` stored). What is uploaded is a staging folder built
in `RUN/_publish/<version>/` holding exactly `README.md` (the dataset card), `manifest.json` and
`data/train-*.parquet` (plus `evidence/<table>/part-*.parquet` with `--include-evidence`). Then, in order
(docs/infrastructure.md §5): create the dataset repo (exist_ok), create the branch from `main` (exist_ok),
`upload_folder` the staging folder to the branch with `delete_patterns=["data/*.parquet"]` so stale shards go, and
tag the upload's commit with the version. `publish.json` in the run folder records what was published.

The tag is the version (`v1-<config hash>`) and the branch is `version/<version>`: a branch and a tag of the same
name make `revision=<name>` an ambiguous git ref, so the two never share a name (`branch_name`).

Refused: a run without `manifest.json` (unfinished), shards that disagree with the manifest, and a version that is
already published (its tag is on the repo, or `publish.json` records it) unless `force=True`.
`--dry-run` prints the plan, writes the same staging folder and makes no network call.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from pipelines.card import (
    DEFAULT_LICENSE,
    DEFAULT_TERMS,
    SHARDS_GLOB,
    CardTerms,
    default_version,
    evidence_dir,
    evidence_tables,
    public_manifest,
    read_manifest,
    shard_files,
    shard_stats,
    write_dataset_card,
)

REPO_TYPE = "dataset"
BASE_BRANCH = "main"
RECORD = "publish.json"
BRANCH_PREFIX = "version/"  # branches in their own namespace: `version/v1-abc`, tagged `v1-abc`
STAGING_ROOT = "_publish"  # `_`-prefixed like `_work`: scratch beside the run's outputs, never matched by their globs
DATA_DELETE_PATTERNS = ["data/*.parquet"]  # drop shards the new version no longer has (docs/infrastructure.md §5)
EVIDENCE_DELETE_PATTERNS = ["evidence/*"]


class PublishError(RuntimeError):
    """A publish that was refused before anything was written to the Hub."""


def branch_name(version: str, branch: str | None = None) -> str:
    """The branch a version is uploaded to: `version/<version>` unless named, and never the tag's own name."""
    name = branch or f"{BRANCH_PREFIX}{version}"
    if name == version:
        # git resolves `refs/heads/X` and `refs/tags/X` by one name: `revision=X` would mean either.
        raise PublishError(
            f"branch {name!r} has the tag's name; pick another branch (default: {BRANCH_PREFIX}{version})"
        )
    return name


def file_sha256(path: Path) -> str:
    """sha256 of a file, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link (shards can be large; nothing rewrites a staged file in place), else copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _endpoint(endpoint: str | None) -> str:
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


def read_record(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run's `publish.json` (the latest publication, earlier ones under `history`), or None."""
    path = Path(run_dir) / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def _recorded(record: dict[str, Any] | None, repo_id: str, tag: str, endpoint: str) -> dict[str, Any] | None:
    if not record:
        return None
    for entry in [record, *record.get("history", [])]:
        if (entry.get("repo_id"), entry.get("tag"), entry.get("endpoint")) == (repo_id, tag, endpoint):
            return entry
    return None


def _write_record(run_dir: Path, entry: dict[str, Any]) -> Path:
    previous = read_record(run_dir)
    history: list[dict[str, Any]] = []
    if previous:
        history = [*previous.pop("history", []), previous]
    record = {**entry, "history": history}
    path = run_dir / RECORD
    temp = path.with_name(f".{RECORD}.tmp-{os.getpid()}")
    temp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(temp, path)
    return path


def check_shards(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Refuse shards that are missing or disagree with the manifest's counts (the folder changed after the run)."""
    if not shard_files(run_dir):
        raise PublishError(f"{run_dir}: no {SHARDS_GLOB}, nothing to publish")
    counts = manifest.get("counts") or {}
    stats = shard_stats(run_dir)
    for name, found in (("paths", stats.rows), ("steps", stats.steps), ("steps_positive", stats.steps_positive)):
        if name in counts and counts[name] != found:
            raise PublishError(
                f"{run_dir}: the shards hold {found} {name} but manifest.json says {counts[name]}; "
                "the run folder changed after the run finished, rerun it"
            )


def stage(
    run_dir: str | os.PathLike[str],
    staging_dir: str | os.PathLike[str],
    *,
    repo_id: str,
    version: str,
    include_evidence: bool = False,
    terms: CardTerms = DEFAULT_TERMS,
) -> list[dict[str, Any]]:
    """Build the staging folder from scratch: card, manifest, shards (and evidence); return its files, sorted.

    The card is (re)written in the run folder first, with this repo and version in its loading snippets. Evidence
    comes from the run's `evidence/`, or from its parent run's when it was relabelled from one.
    """
    run = Path(run_dir)
    staging = Path(staging_dir)
    evidence = evidence_dir(run, read_manifest(run)) if include_evidence else None
    if include_evidence and evidence is None:
        raise PublishError(f"{run}: include_evidence, but neither the run nor its parent run has evidence tables")
    tables = evidence_tables(evidence)
    card = write_dataset_card(run, repo_id=repo_id, version=version, terms=terms, evidence=tables)
    if staging.exists():
        if any(staging.iterdir()) and not (staging / "manifest.json").is_file():
            raise PublishError(f"{staging}: not empty and not an earlier staging folder; pick another staging_dir")
        shutil.rmtree(staging)  # exactly these files, nothing left from an earlier staging
    staging.mkdir(parents=True)
    shutil.copy2(card, staging / "README.md")
    # The published manifest names input files, local models and parent runs by name only (card.public_manifest).
    public = public_manifest(read_manifest(run))
    (staging / "manifest.json").write_text(json.dumps(public, indent=2, sort_keys=True) + "\n")
    for shard in shard_files(run):
        _link_or_copy(shard, staging / "data" / shard.name)
    if evidence is not None:
        for table in tables:
            for part in sorted((evidence / table).glob("part-*.parquet")):
                _link_or_copy(part, staging / "evidence" / table / part.name)
    files = []
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        files.append(
            {"path": path.relative_to(staging).as_posix(), "size": path.stat().st_size, "sha256": file_sha256(path)}
        )
    return files


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as the dry run prints it."""
    total = sum(f["size"] for f in plan["files"])
    lines = [
        f"publish plan{' (dry run: no request made)' if plan['dry_run'] else ''}",
        f"  repo:     {plan['repo_type']} {plan['repo_id']} at {plan['endpoint']}"
        f"{' (private if created)' if plan['private'] else ''}",
        f"  branch:   {plan['branch']} (created from {BASE_BRANCH} if missing)",
        f"  tag:      {plan['tag']} -> the upload's commit{' (replaces the existing tag)' if plan['force'] else ''}",
        f"  commit:   {plan['commit_message']}",
        f"  delete:   remote files matching {plan['delete_patterns']} that this upload does not have",
        f"  staging:  {plan['staging_dir']}",
        f"  files:    {len(plan['files'])}, {total} bytes",
    ]
    width = max(len(f["path"]) for f in plan["files"])
    lines += [f"    {f['path']:<{width}}  {f['size']:>12}  sha256:{f['sha256']}" for f in plan["files"]]
    return "\n".join(lines)


def publish(
    run_dir: str | os.PathLike[str],
    repo_id: str,
    version: str | None = None,
    *,
    branch: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    private: bool = False,
    include_evidence: bool = False,
    terms: CardTerms = DEFAULT_TERMS,
    staging_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Publish a finished run as dataset version `version` (default `v<schema_version>-<config_hash[:12]>`).

    Returns the plan (repo, branch, tag, files with sizes and sha256, staging folder) plus, after a real publish,
    `commit_oid`, `commit_url` and `record` (the `publish.json` path). Raises `RunNotFinishedError` for a run
    without a manifest and `PublishError` for a refused publish; Hub errors propagate as `HfHubHTTPError`.
    """
    run = Path(run_dir)
    manifest = read_manifest(run)  # no manifest, no publish: it is written last (docs/infrastructure.md §3.2)
    version = version or default_version(manifest)
    branch = branch_name(version, branch)
    hub = _endpoint(endpoint)
    recorded = _recorded(read_record(run), repo_id, version, hub)
    if recorded and not force:
        raise PublishError(
            f"{repo_id}@{version} is already published from this run (publish.json: commit "
            f"{recorded.get('commit_oid')}); pass force=True (--force) to publish it again"
        )
    check_shards(run, manifest)

    staging = Path(staging_dir) if staging_dir else run / STAGING_ROOT / version
    files = stage(
        run,
        staging,
        repo_id=repo_id,
        version=version,
        include_evidence=include_evidence,
        terms=terms,
    )
    counts = manifest.get("counts") or {}
    plan: dict[str, Any] = {
        "repo_id": repo_id,
        "repo_type": REPO_TYPE,
        "endpoint": hub,
        "private": private,
        "version": version,
        "branch": branch,
        "tag": version,
        "force": force,
        "dry_run": dry_run,
        "delete_patterns": DATA_DELETE_PATTERNS + (EVIDENCE_DELETE_PATTERNS if include_evidence else []),
        "commit_message": f"StepForge {version}: {counts.get('paths', '?')} paths, {counts.get('steps', '?')} steps "
        f"(config {manifest['config_hash'][:12]})",
        "staging_dir": str(staging),
        "files": files,
    }
    if dry_run:
        print(format_plan(plan))
        return plan

    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    api = HfApi(endpoint=hub, token=token)
    try:
        tags = {ref.name for ref in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).tags}
    except RepositoryNotFoundError:
        tags = set()  # a new repo: nothing published yet
    if version in tags and not force:
        raise PublishError(
            f"tag {version} already exists on {repo_id}: this version is published; "
            "pass force=True (--force) to move the tag to a new upload"
        )
    # The order of docs/infrastructure.md §5: repo, branch from main, upload_folder to the branch, tag its commit.
    api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
    api.create_branch(repo_id, branch=branch, revision=BASE_BRANCH, repo_type=REPO_TYPE, exist_ok=True)
    if version in tags:
        api.delete_tag(repo_id, tag=version, repo_type=REPO_TYPE)  # --force: the tag moves to the new upload
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(staging),
        repo_type=REPO_TYPE,
        revision=branch,
        commit_message=plan["commit_message"],
        commit_description=f"code {manifest.get('code_version')}, schema {manifest.get('schema_version')}, "
        f"config {manifest['config_hash']}",
        delete_patterns=plan["delete_patterns"],
    )
    # Tag the upload's own commit, not the branch head: the tag names exactly these files (docs/infrastructure.md §5).
    api.create_tag(
        repo_id,
        tag=version,
        revision=commit.oid,
        tag_message=f"StepForge {version} (config {manifest['config_hash']})",
        repo_type=REPO_TYPE,
    )
    entry = {
        "repo_id": repo_id,
        "repo_type": REPO_TYPE,
        "endpoint": hub,
        "branch": branch,
        "tag": version,
        "commit_oid": commit.oid,
        "commit_url": str(commit.commit_url),
        "config_hash": manifest["config_hash"],
        "schema_version": manifest.get("schema_version"),
        "files": files,
    }
    record = _write_record(run, entry)
    if staging_dir is None:
        shutil.rmtree(staging)  # uploaded; the record keeps each file's size and sha256
    return {**plan, "commit_oid": commit.oid, "commit_url": str(commit.commit_url), "record": str(record)}


# ---------------------------------------------------------------- command line


def cmd_publish(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    """`run.py publish`: print the plan (dry run) or one line per published version; exit 2 when refused."""
    from huggingface_hub.errors import HfHubHTTPError

    from pipelines.card import RunNotFinishedError

    if beam_args:
        print(f"publish: unknown options {beam_args}", file=sys.stderr)
        return 2
    try:
        result = publish(
            args.run,
            args.repo,
            args.version,
            branch=args.branch,
            token=os.environ.get("HF_TOKEN") or None,
            endpoint=args.endpoint,
            dry_run=args.dry_run,
            force=args.force,
            private=args.private,
            include_evidence=args.include_evidence,
            terms=CardTerms(
                args.license, args.license_name, args.license_link, tuple(args.source_dataset or ()) or None
            ),
        )
    except (PublishError, RunNotFinishedError, ValueError) as error:
        print(f"publish refused: {error}", file=sys.stderr)
        return 2
    except HfHubHTTPError as error:
        print(f"publish failed: {error}", file=sys.stderr)
        return 1
    if not args.dry_run:
        print(
            f"published {result['repo_id']}@{result['tag']} (branch {result['branch']}, commit {result['commit_oid']}, "
            f"{len(result['files'])} files); recorded in {result['record']}"
        )
    return 0


def add_publish_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `publish` on run.py's subparsers (it sets `func`)."""
    parser = subparsers.add_parser("publish", help="upload a finished run to the HF Hub as a branch + tag")
    parser.add_argument("run", help="finished run folder (with manifest.json)")
    parser.add_argument("--repo", required=True, metavar="ORG/NAME", help="dataset repo id on the Hub")
    parser.add_argument("--version", default=None, help="tag name (default: v<schema_version>-<config_hash[:12]>)")
    parser.add_argument("--branch", default=None, help="branch to upload to (default: version/<version>)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stage the files; no request")
    parser.add_argument("--force", action="store_true", help="publish a version again (moves its tag)")
    parser.add_argument("--include-evidence", action="store_true", help="also upload evidence/<table>/part-*.parquet")
    parser.add_argument("--private", action="store_true", help="create the repo private (if it does not exist)")
    parser.add_argument("--license", default=DEFAULT_LICENSE, help=f"card license id (default: {DEFAULT_LICENSE})")
    parser.add_argument(
        "--license-name", default=None, help="with --license other: its id (default: inherited-from-sources)"
    )
    parser.add_argument("--license-link", default=None, help="with --license other: a file in the repo or a URL")
    parser.add_argument(
        "--source-dataset",
        action="append",
        default=[],
        metavar="ID",
        help="the card's source_datasets, e.g. openai/gsm8k (default: from the input)",
    )
    parser.add_argument(
        "--endpoint", default=None, metavar="URL", help="Hub endpoint (default: HF_ENDPOINT or the Hub)"
    )
    parser.set_defaults(func=cmd_publish)
