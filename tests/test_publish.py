"""Publishing and the dataset card, against a local stand-in for the few Hub endpoints `publish` calls.

The stand-in (`FakeHub`) is an `http.server` on 127.0.0.1 that keeps repos as commits of {path: bytes} with
branches and tags, and records every request. It implements exactly what huggingface_hub 2.4.0's `HfApi` sends
for `list_repo_refs`, `create_repo`, `create_branch`, `upload_folder` (tree listing for `delete_patterns`,
README YAML validation, preupload, NDJSON commit, and `repo_info` for a commit with nothing new), `create_tag`
and `delete_tag`. Xet is switched off and preupload answers `uploadMode: "regular"`, so every file travels
inline (base64) in the commit payload, where the test can read it.
"""

from __future__ import annotations

import argparse
import base64
import glob
import hashlib
import json
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from commands.publish import PublishError, add_publish_commands, publish, read_record
from pipelines.card import CardTerms, RunNotFinishedError, default_version, render_card, write_dataset_card
from schemas.tables import PATHS, SOLUTIONS

REPO = "stepforge-org/prm-demo"
TOKEN = "hf_standin_token"
CONFIG_HASH = "0123456789abcdef" * 4
VERSION = f"v1-{CONFIG_HASH[:12]}"
BRANCH = f"version/{VERSION}"  # the tag's branch: another name, so `revision=` is never ambiguous
INPUT = "/home/someone/private/problems/gsm8k_train.jsonl"  # a local path the published files must not name


# ---------------------------------------------------------------- the Hub stand-in


def git_blob_oid(content: bytes) -> str:
    """Git's blob sha1, what the Hub's preupload answers as a regular file's `oid` (compared client-side)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Request:
    method: str
    path: str  # unquoted
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def ndjson(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]


@dataclass
class Repo:
    private: bool
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        return revision if revision in self.commits else None

    def commit(self, parent: str | None, files: dict[str, bytes], message: str) -> str:
        digest = hashlib.sha1(
            json.dumps([parent, message, sorted((p, git_blob_oid(c)) for p, c in files.items())]).encode()
        )
        oid = digest.hexdigest()
        self.commits[oid] = dict(files)
        return oid


class HttpError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.error_code = status, message, error_code


class FakeHub:
    """In-memory Hub: the endpoints huggingface_hub 2.4.0 calls for publish, nothing else (404 for the rest)."""

    _REPO_ROUTE = re.compile(
        r"^/api/datasets/([^/]+)/([^/]+)/(refs|branch|tag|preupload|commit|tree|revision)(?:/(.*))?$"
    )

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- plumbing
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, Any]:
        split = urlsplit(raw_path)
        request = Request(method, unquote(split.path), parse_qs(split.query), headers, body)
        with self.lock:
            self.requests.append(request)
            try:
                if headers.get("authorization") != f"Bearer {TOKEN}":
                    raise HttpError(401, "Invalid credentials in Authorization header")
                return 200, {}, self._route(method, split.path, request)
            except HttpError as error:
                extra = {"X-Error-Code": error.error_code} if error.error_code else {}
                payload: dict[str, Any] = {"error": error.message}
                if error.status == 409 and method == "POST" and split.path == "/api/repos/create":
                    payload["url"] = self._repo_url(self._create_name(request))
                return error.status, extra, payload

    def _route(self, method: str, path: str, request: Request) -> Any:
        if (method, path) == ("POST", "/api/repos/create"):
            return self.create_repo(request)
        if (method, path) == ("POST", "/api/validate-yaml"):
            return self.validate_yaml(request)
        match = self._REPO_ROUTE.match(path)
        if not match:
            raise HttpError(404, f"stand-in: no route {method} {path}")
        org, name, action, rest = match.groups()
        repo_id = f"{unquote(org)}/{unquote(name)}"
        repo = self.repos.get(repo_id)
        if repo is None:
            raise HttpError(404, f"Repository {repo_id} not found", "RepoNotFound")
        handler = getattr(self, f"{method.lower()}_{action}", None)
        if handler is None:
            raise HttpError(405, f"stand-in: {method} {action} not supported")
        return handler(repo_id, repo, rest or "", request)

    def _repo_url(self, repo_id: str) -> str:
        return f"{self.url}/datasets/{repo_id}"

    @staticmethod
    def _create_name(request: Request) -> str:
        payload = request.json()
        return f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]

    @staticmethod
    def _revision(repo: Repo, revision: str) -> str:
        oid = repo.resolve(revision)
        if oid is None:
            raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return oid

    # -- endpoints
    def create_repo(self, request: Request) -> Any:
        payload = request.json()
        if payload.get("type") != "dataset":
            raise HttpError(400, f"stand-in: only dataset repos, got {payload.get('type')!r}")
        repo_id = self._create_name(request)
        if repo_id in self.repos:
            raise HttpError(409, "You already created this dataset repo")
        repo = Repo(private=payload.get("visibility") == "private")
        repo.branches["main"] = repo.commit(
            None, {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"}, "initial commit"
        )
        self.repos[repo_id] = repo
        return {"url": self._repo_url(repo_id), "name": repo_id, "id": repo_id}

    def validate_yaml(self, request: Request) -> Any:
        content = request.json()["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        if not match:
            raise HttpError(400, "no YAML front matter")
        yaml.safe_load(match.group(1))
        return {"errors": [], "warnings": []}

    def get_refs(self, repo_id: str, repo: Repo, rest: str, request: Request) -> Any:
        def refs(kind: str, table: dict[str, str]) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": oid} for n, oid in sorted(table.items())]

        return {"branches": refs("heads", repo.branches), "converts": [], "tags": refs("tags", repo.tags)}

    def post_branch(self, repo_id: str, repo: Repo, rest: str, request: Request) -> Any:
        branch = unquote(rest)
        if branch in repo.branches:
            raise HttpError(409, f"Reference refs/heads/{branch} already exists")
        repo.branches[branch] = self._revision(repo, request.json().get("startingPoint", "main"))
        return {}

    def post_tag(self, repo_id: str, repo: Repo, rest: str, request: Request) -> Any:
        oid = self._revision(repo, unquote(rest))
        tag = request.json()["tag"]
        if tag in repo.tags:
            raise HttpError(409, f"Tag {tag} already exists")
        repo.tags[tag] = oid
        return {}

    def delete_tag(self, repo_id: str, repo: Repo, rest: str, request: Request) -> Any:
        tag = unquote(rest)
        if repo.tags.pop(tag, None) is None:
            raise HttpError(404, f"Tag {tag} not found", "RevisionNotFound")
        return {}

    def get_tree(self, repo_id: str, repo: Repo, rest: str, request: Request) -> Any:
        revision, _, prefix = rest.partition("/")
        files = repo.commits[self._revision(repo, unquote(revision))]
        prefix = unquote(prefix).strip("/")
        recursive = request.query.get("recursive", ["False"])[0].lower() == "true"
        entries: dict[str, dict[str, Any]] = {}
        for path, content in sorted(files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            relative = path[len(prefix) + 1 :] if prefix else path
            parts = relative.split("/")
            for depth in range(1, len(parts)):  # the folders on the way, as the Hub lists them
                if recursive or depth == 1:
                    folder = "/".join(([prefix] if prefix else []) + parts[:depth])
                    entries.setdefault(folder, {"type": "directory", "path": folder, "oid": "0" * 40, "size": 0})
                if not recursive:
                    break
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "path": path, "size": len(content), "oid": git_blob_oid(content)}
        return list(entries.values())

    def post_preupload(self, repo_id: str, repo: Repo, rest: str, request: Request) -> Any:
        files = repo.commits[self._revision(repo, unquote(rest))]
        answer = []
        for item in request.json()["files"]:
            existing = files.get(item["path"])
            answer.append(
                {
                    "path": item["path"],
                    "uploadMode": "regular",  # inline in the commit: no LFS or Xet transfer to fake
                    "shouldIgnore": False,
                    "oid": git_blob_oid(existing) if existing is not None else None,
                }
            )
        return {"files": answer}

    def post_commit(self, repo_id: str, repo: Repo, rest: str, request: Request) -> Any:
        branch = unquote(rest)
        if branch not in repo.branches:
            raise HttpError(
                404 if repo.resolve(branch) is None else 400, f"Invalid rev id: {branch}", "RevisionNotFound"
            )
        if request.headers.get("content-type") != "application/x-ndjson":
            raise HttpError(400, "stand-in: the commit payload is NDJSON")
        lines = request.ndjson()
        if not lines or lines[0]["key"] != "header":
            raise HttpError(400, "stand-in: the commit payload starts with a header line")
        files = dict(repo.commits[repo.branches[branch]])
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HttpError(404, "A file with this name doesn't exist", "EntryNotFound")
            elif key == "deletedFolder":
                files = {p: c for p, c in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                raise HttpError(400, f"stand-in: {key} operations are not supported (files go inline)")
        oid = repo.commit(repo.branches[branch], files, lines[0]["value"]["summary"])
        repo.branches[branch] = oid
        return {
            "success": True,
            "commitOid": oid,
            "commitUrl": f"{self._repo_url(repo_id)}/commit/{oid}",
            "hookOutput": "",
        }

    def get_revision(self, repo_id: str, repo: Repo, rest: str, request: Request) -> Any:
        oid = self._revision(repo, unquote(rest))
        return {
            "id": repo_id,
            "sha": oid,
            "private": repo.private,
            "siblings": [{"rfilename": p} for p in sorted(repo.commits[oid])],
        }

    # -- what the tests read
    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]

    def files(self, revision: str, repo_id: str = REPO) -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[self._revision(repo, revision)]


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = b""
                while (size := int(self.rfile.readline().strip(), 16)) > 0:
                    body += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = hub.handle(self.command, self.path, headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = _serve

        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

    return Handler


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    """The stand-in, with huggingface_hub online and Xet off (constants are read at import, so patch both)."""
    import huggingface_hub.constants as constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    fake = FakeHub()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


# ---------------------------------------------------------------- a small finished run


def _path_row(i: int) -> dict[str, Any]:
    n = 2 + i % 3
    first_error = [-1, 0, 1, -1, 2][i % 5]
    first_error = first_error if first_error < n else -1
    labels = [first_error < 0 or j < first_error for j in range(n)]
    steps = [f"Step {j + 1}: {i}+{j}={i + j}" for j in range(n)]
    if i == 3:
        steps[0] = "Step 1:\nline two"  # one step holding TRL's separator
    return {
        "id": f"path-{i:03d}",
        "problem_id": f"p{i // 2}",
        "source": "arithmetic",
        "prompt": f"Q: {i}+1=?",
        "completions": steps,
        "labels": labels,
        "mc_values": [1.0 if ok else 0.0 for ok in labels],
        "n_correct": [2 if ok else 0 for ok in labels],
        "n_rollouts": [2] * n,
        "label_policy": "mc>0",
        "first_error_index": first_error,
        "truncated_after_first_error": False,
        "is_terminal": True,
        "final_answer": str(i + 1),
        "outcome_correct": first_error < 0,
        "gold_answer": str(i + 1),
        "policy_model": "models/tiny-arith",
        "search": "mc",
        "seed": i,
        "config_hash": CONFIG_HASH,
        "schema_version": "1",
        "meta": "{}",
    }


def make_run(root: Path, *, paths: int = 10, shards: int = 2, lineage: dict[str, Any] | None = None) -> Path:
    """A finished run folder as pipelines/synthesize.py leaves it: shards, evidence, dead letters, manifest last."""
    run = root / "run"
    rows = [_path_row(i) for i in range(paths)]
    (run / "data").mkdir(parents=True, exist_ok=True)
    for old in (run / "data").glob("*.parquet"):
        old.unlink()
    for shard in range(shards):
        table = pa.Table.from_pylist(rows[shard::shards], schema=PATHS)
        pq.write_table(table, run / "data" / f"train-{shard:05d}-of-{shards:05d}.parquet")
    solutions = [
        {
            "problem_id": f"p{i}",
            "solution_index": 0,
            "text": "t",
            "steps": ["a"],
            "step_ends": [1],
            "final_answer": "1",
            "outcome_correct": True,
            "verdict_reason": "ok",
            "finish_reason": "stop",
            "n_tokens": 3,
            "seed": i,
        }
        for i in range(6)
    ]
    (run / "evidence" / "solutions").mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pylist(solutions, schema=SOLUTIONS), run / "evidence/solutions/part-00000-of-00001.parquet"
    )
    (run / "filtered").mkdir(exist_ok=True)
    (run / "dead_letters").mkdir(exist_ok=True)
    dead = [{"stage": "read", "source": "problems.jsonl", "reason": "JSONDecodeError: bad", "row": "{"}]
    (run / "dead_letters" / "dead_letters.jsonl").write_text("".join(json.dumps(d) + "\n" for d in dead))
    steps = sum(len(r["labels"]) for r in rows)
    positive = sum(sum(r["labels"]) for r in rows)
    manifest = {
        "stepforge_manifest": 1,
        "command": "synthesize",
        "schema_version": "1",
        "code_version": "abc1234-dirty",
        "config_hash": CONFIG_HASH,
        "config": {
            "run": {"name": "demo", "seed": 0},
            "input": {"path": INPUT, "format": "auto", "dataset": {"name": "", "config": None, "split": "train"}},
            "policy": {"engine": "vllm", "model": "models/tiny-arith"},
            "search": {"method": "mc", "num_solutions": 2, "completions_per_step": 2},
            "label": {"hard_rule": "mc>0"},
        },
        "engine": {
            "engine": "vllm",
            "model": "models/tiny-arith",
            "revision": None,
            "generated_tokens": 1234,
            "engine_calls": 7,
        },
        "counts": {
            "read": 6,
            "problems": 5,
            "problems_labelled": 5,
            "paths": paths,
            "steps": steps,
            "steps_positive": positive,
            "steps_negative": steps - positive,
            "solutions": 6,
            "completions": 40,
            "dead_lettered": 1,
            "filtered": 0,
            "dead_letters_by_reason": {"JSONDecodeError": 1},
            "dead_letters_by_stage": {"read": 1},
            "balanced": True,
        },
        "timings": {"wall_seconds": 12.5, "generated_tokens_per_second": 98.7},
        "lineage": lineage or {"parent_run": None},
    }
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return run


def front_matter(text: str) -> dict[str, Any]:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "the card starts with YAML front matter"
    return yaml.safe_load(match.group(1))


def card_table(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|$", text, re.M))


# ---------------------------------------------------------------- the card


def test_card_front_matter_points_at_the_shards_and_numbers_equal_the_manifest(tmp_path: Path):
    run = make_run(tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    counts = manifest["counts"]
    path = write_dataset_card(run)
    assert path == run / "README.md"
    text = path.read_text()

    meta = front_matter(text)
    assert meta["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}
    ]
    assert sorted(glob.glob(str(run / meta["configs"][0]["data_files"][0]["path"]))) == [
        str(run / "data/train-00000-of-00002.parquet"),
        str(run / "data/train-00001-of-00002.parquet"),
    ]
    assert meta["license"] == "other" and "process-reward-model" in meta["tags"]
    assert meta["size_categories"] == ["n<1K"] and meta["task_categories"] == ["token-classification"]
    from huggingface_hub import DatasetCard

    assert DatasetCard(text).data.configs == meta["configs"]  # the Hub library reads the same metadata

    table = card_table(text)
    assert table["steps"] == str(counts["steps"])
    assert table["positive steps"] == str(counts["steps_positive"])
    assert table["negative steps"] == str(counts["steps_negative"])
    assert table["positive share"] == f"{counts['steps_positive'] / counts['steps']:.4f}"
    assert table["labelled paths (rows)"] == str(counts["paths"])
    assert table["solutions sampled"] == str(counts["solutions"])
    assert table["dead letters"] == str(counts["dead_lettered"])
    assert table["config hash"] == f"`{CONFIG_HASH}`"
    assert table["code version"] == "`abc1234-dirty`" and table["schema version"] == "`1`"
    assert 'Dead letters by reason: `{"JSONDecodeError": 1}`' in text

    # The first-error histogram comes from the shards' own column.
    rows = pq.read_table(run / "data").to_pylist()
    expected = Counter(r["first_error_index"] for r in rows)
    histogram = dict(re.findall(r"^\| (\d+|none \(all steps correct\)) \| (\d+) \| [\d.]+ \|$", text, re.M))
    assert {k: int(v) for k, v in histogram.items()} == {
        **{str(k): v for k, v in expected.items() if k >= 0},
        "none (all steps correct)": expected[-1],
    }

    assert "search:\n  completions_per_step: 2\n  method: mc" in text  # the config, as YAML
    assert 'load_dataset("ORG/NAME", revision="v1-0123456789ab", split="train")' in text
    assert "from trl.experimental.prm import PRMConfig, PRMTrainer" in text
    assert "1 step(s) contain a newline" in text
    assert "A fresh run" in text
    assert write_dataset_card(run).read_text() == text  # deterministic: same run, same bytes


def test_card_lineage_and_datasets_reads_its_config(tmp_path: Path):
    parent = tmp_path / "parent"
    run = make_run(
        tmp_path, lineage={"parent_run": str(parent), "parent_config_hash": "f" * 64, "evidence": f"{parent}/evidence"}
    )
    text = render_card(run, repo_id=REPO, version="v9")
    assert "| lineage: parent_run | `parent` |" in text and str(tmp_path) not in text  # by name, not local path
    assert "parent_config_hash: " + "f" * 64 in text
    assert f'load_dataset("{REPO}", revision="v9", split="train")' in text

    write_dataset_card(run)
    import datasets

    # The folder also holds evidence/ and filtered/ Parquet: only the card's configs keep them out of `train`.
    dataset = datasets.load_dataset(str(run), split="train")
    assert dataset.num_rows == 10 and "labels" in dataset.column_names


def test_card_metadata_names_its_license_creators_and_sources_and_no_local_path(tmp_path: Path):
    run = make_run(tmp_path)
    text = render_card(run)
    meta = front_matter(text)
    # hub-docs datasetcard.md: `license: other` needs `license_name` and `license_link`.
    assert (meta["license"], meta["license_name"], meta["license_link"]) == (
        "other",
        "inherited-from-sources",
        "README.md",
    )
    assert "## License" in text
    assert meta["annotations_creators"] == ["machine-generated"]
    assert meta["source_datasets"] == ["extended|other"]  # problems from a file the card cannot name
    assert INPUT not in text and "/home/someone" not in text and "path: gsm8k_train.jsonl" in text

    named = front_matter(render_card(run, terms=CardTerms("other", "my-terms", "https://x.org/t")))
    assert (named["license_name"], named["license_link"]) == ("my-terms", "https://x.org/t")
    mit = front_matter(render_card(run, terms=CardTerms("mit", sources=("openai/gsm8k",))))
    assert mit["license"] == "mit" and "license_name" not in mit and mit["source_datasets"] == ["openai/gsm8k"]

    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["input"] = {"path": "", "dataset": {"name": "openai/gsm8k", "config": "main"}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert front_matter(render_card(run))["source_datasets"] == ["openai/gsm8k"]  # a hub input is its own source


def test_public_manifest_keeps_hub_ids_and_file_names_only():
    from pipelines.card import public_manifest

    manifest = {
        "config": {
            "input": {"path": "/data/me/in.jsonl", "dataset": {"name": "/data/me/saved_ds"}},
            "policy": {"model": "/models/qwen-7b"},
            "judge": {"engine": {"model": "Qwen/Qwen2.5-72B-Instruct"}},
        },
        "engine": {"model": "/models/qwen-7b"},
        "lineage": {"parent_run": "/runs/a/schema_v1/cfg_x", "evidence": "/runs/a/schema_v1/cfg_x/evidence"},
    }
    public = public_manifest(manifest)
    assert public["config"]["input"] == {"path": "in.jsonl", "dataset": {"name": "saved_ds"}}
    assert public["config"]["policy"]["model"] == public["engine"]["model"] == "qwen-7b"
    assert public["config"]["judge"]["engine"]["model"] == "Qwen/Qwen2.5-72B-Instruct"  # a hub id stays
    assert public["lineage"] == {"parent_run": "cfg_x", "evidence": "evidence"}
    assert manifest["config"]["input"]["path"] == "/data/me/in.jsonl"  # the run's own manifest is untouched


def test_branch_and_tag_never_share_a_name(tmp_path: Path, hub: FakeHub):
    from commands.publish import branch_name

    assert branch_name("v1-abc") == "version/v1-abc" and branch_name("v1-abc", "release") == "release"
    run = make_run(tmp_path)
    with pytest.raises(PublishError, match="has the tag's name"):
        publish(run, REPO, "v7", branch="v7", token=TOKEN, endpoint=hub.url)
    assert hub.requests == []


def test_card_refuses_an_unfinished_run(tmp_path: Path):
    run = make_run(tmp_path)
    (run / "manifest.json").unlink()
    with pytest.raises(RunNotFinishedError, match="no manifest.json, so the run is unfinished"):
        write_dataset_card(run)


# ---------------------------------------------------------------- publish


def staged_expectation(run: Path) -> dict[str, bytes]:
    from pipelines.card import public_manifest

    public = public_manifest(json.loads((run / "manifest.json").read_text()))  # local paths by file name only
    manifest = (json.dumps(public, indent=2, sort_keys=True) + "\n").encode()
    files = {"README.md": (run / "README.md").read_bytes(), "manifest.json": manifest}
    for shard in sorted((run / "data").glob("train-*.parquet")):
        files[f"data/{shard.name}"] = shard.read_bytes()
    return files


def test_publish_makes_the_expected_requests_and_uploads_exactly_the_staged_files(tmp_path: Path, hub: FakeHub):
    run = make_run(tmp_path)
    result = publish(run, REPO, token=TOKEN, endpoint=hub.url)

    assert result["version"] == VERSION == default_version(json.loads((run / "manifest.json").read_text()))
    api = f"/api/datasets/{REPO}"
    assert hub.calls() == [
        ("GET", f"{api}/refs"),  # is the version published? (the repo does not exist yet: 404)
        ("POST", "/api/repos/create"),
        ("POST", f"{api}/branch/{BRANCH}"),
        ("GET", f"{api}/tree/{BRANCH}"),  # delete_patterns: list the branch
        ("POST", "/api/validate-yaml"),  # the card's YAML: upload_folder checks it first ...
        ("POST", "/api/validate-yaml"),  # ... and create_commit again
        ("POST", f"{api}/preupload/{BRANCH}"),
        ("POST", f"{api}/commit/{BRANCH}"),
        ("POST", f"{api}/tag/{result['commit_oid']}"),
    ]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in hub.requests)
    create, branch, tree, validate, _, preupload, commit, tag = hub.requests[1:]
    assert create.json() == {
        "name": "prm-demo",
        "organization": "stepforge-org",
        "type": "dataset",
        "visibility": "public",
    }
    assert branch.json() == {"startingPoint": "main"}
    assert tree.query == {"recursive": ["true"], "expand": ["false"]}
    expected = staged_expectation(run)
    assert validate.json()["content"] == expected["README.md"].decode()
    assert sorted(f["path"] for f in preupload.json()["files"]) == sorted(expected)
    assert commit.headers["content-type"] == "application/x-ndjson"
    lines = commit.ndjson()
    assert lines[0] == {
        "key": "header",
        "value": {"summary": result["commit_message"], "description": lines[0]["value"]["description"]},
    }
    assert f"config {CONFIG_HASH}" in lines[0]["value"]["description"]
    assert all(line["key"] == "file" and line["value"]["encoding"] == "base64" for line in lines[1:])
    sent = {line["value"]["path"]: base64.b64decode(line["value"]["content"]) for line in lines[1:]}
    assert sent == expected  # exactly the staged files, byte for byte
    assert json.loads(sent["manifest.json"])["config"]["input"]["path"] == "gsm8k_train.jsonl"
    assert INPUT.encode() not in sent["manifest.json"] + sent["README.md"]
    assert tag.json() == {"tag": VERSION, "message": f"StepForge {VERSION} (config {CONFIG_HASH})"}

    # The Hub now has the branch with those files (plus main's .gitattributes) and the tag on the upload commit.
    repo = hub.repos[REPO]
    assert repo.tags == {VERSION: result["commit_oid"]} and repo.branches[BRANCH] == result["commit_oid"]
    assert BRANCH not in repo.tags and VERSION not in repo.branches  # no name is both a branch and a tag
    assert (
        hub.files(BRANCH) == hub.files(VERSION) == {**expected, ".gitattributes": hub.files("main")[".gitattributes"]}
    )
    assert set(hub.files("main")) == {".gitattributes"}

    record = read_record(run)
    assert record is not None and (record["repo_id"], record["branch"], record["tag"], record["commit_oid"]) == (
        REPO,
        BRANCH,
        VERSION,
        result["commit_oid"],
    )
    assert record["endpoint"] == hub.url and record["history"] == []
    assert [f["path"] for f in record["files"]] == sorted(expected)
    assert not Path(result["staging_dir"]).exists()  # uploaded, then cleaned up


def test_publish_refuses_an_unfinished_run_without_a_request(tmp_path: Path, hub: FakeHub):
    run = make_run(tmp_path)
    (run / "manifest.json").unlink()
    with pytest.raises(RunNotFinishedError, match="unfinished"):
        publish(run, REPO, token=TOKEN, endpoint=hub.url)
    assert hub.requests == [] and not (run / "_publish").exists() and not (run / "README.md").exists()


def test_publish_refuses_shards_that_disagree_with_the_manifest(tmp_path: Path, hub: FakeHub):
    run = make_run(tmp_path)
    (run / "data" / "train-00001-of-00002.parquet").unlink()
    with pytest.raises(PublishError, match="the shards hold 5 paths but manifest.json says 10"):
        publish(run, REPO, token=TOKEN, endpoint=hub.url)
    assert hub.requests == []


def test_second_publish_of_a_version_is_refused_and_passes_with_force(tmp_path: Path, hub: FakeHub):
    run = make_run(tmp_path)
    first = publish(run, REPO, token=TOKEN, endpoint=hub.url)

    # The local record refuses it before any request.
    hub.requests.clear()
    with pytest.raises(PublishError, match=f"{REPO}@{VERSION} is already published from this run"):
        publish(run, REPO, token=TOKEN, endpoint=hub.url)
    assert hub.requests == []

    # Without the record (another copy of the run), the tag on the Hub refuses it after one read.
    record = (run / "publish.json").read_text()
    (run / "publish.json").unlink()
    with pytest.raises(PublishError, match=f"tag {VERSION} already exists"):
        publish(run, REPO, token=TOKEN, endpoint=hub.url)
    assert hub.calls() == [("GET", f"/api/datasets/{REPO}/refs")]
    (run / "publish.json").write_text(record)

    # force: same files, so the commit is a no-op; the tag is replaced on the same commit.
    hub.requests.clear()
    again = publish(run, REPO, token=TOKEN, endpoint=hub.url, force=True)
    api = f"/api/datasets/{REPO}"
    assert hub.calls() == [
        ("GET", f"{api}/refs"),
        ("POST", "/api/repos/create"),  # 409, exist_ok
        ("POST", f"{api}/branch/{BRANCH}"),  # 409, exist_ok
        ("DELETE", f"{api}/tag/{VERSION}"),
        ("GET", f"{api}/tree/{BRANCH}"),
        ("POST", "/api/validate-yaml"),
        ("POST", "/api/validate-yaml"),
        ("POST", f"{api}/preupload/{BRANCH}"),
        ("GET", f"{api}/revision/{BRANCH}"),  # nothing changed: huggingface_hub asks for the head instead
        ("POST", f"{api}/tag/{first['commit_oid']}"),
    ]
    assert again["commit_oid"] == first["commit_oid"] and hub.repos[REPO].tags == {VERSION: first["commit_oid"]}
    assert [h["commit_oid"] for h in read_record(run)["history"]] == [first["commit_oid"]]


def test_force_republish_with_new_shards_deletes_the_stale_ones(tmp_path: Path, hub: FakeHub):
    run = make_run(tmp_path, shards=2)
    first = publish(run, REPO, token=TOKEN, endpoint=hub.url)
    make_run(tmp_path, shards=3)  # the same rows, resharded
    hub.requests.clear()
    second = publish(run, REPO, token=TOKEN, endpoint=hub.url, force=True)

    commit = next(r for r in hub.requests if r.path.endswith(f"/commit/{BRANCH}"))
    deleted = sorted(line["value"]["path"] for line in commit.ndjson() if line["key"] == "deletedFile")
    assert deleted == ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
    assert second["commit_oid"] != first["commit_oid"]
    assert hub.files(VERSION) == {**staged_expectation(run), ".gitattributes": hub.files("main")[".gitattributes"]}
    assert hub.files(first["commit_oid"]).keys() >= {"data/train-00000-of-00002.parquet"}  # history keeps the old one
    assert hub.repos[REPO].tags == {VERSION: second["commit_oid"]}


def test_publish_to_a_named_branch_with_evidence(tmp_path: Path, hub: FakeHub):
    run = make_run(tmp_path)
    result = publish(run, REPO, "v1.0.0", branch="release", token=TOKEN, endpoint=hub.url, include_evidence=True)
    assert ("POST", f"/api/datasets/{REPO}/branch/release") in hub.calls()
    assert ("POST", f"/api/datasets/{REPO}/commit/release") in hub.calls()
    assert (
        hub.repos[REPO].tags == {"v1.0.0": result["commit_oid"]}
        and hub.repos[REPO].branches["release"] == result["commit_oid"]
    )
    files = hub.files("v1.0.0")
    assert (
        files["evidence/solutions/part-00000-of-00001.parquet"]
        == (run / "evidence/solutions/part-00000-of-00001.parquet").read_bytes()
    )
    configs = front_matter(files["README.md"].decode())["configs"]
    assert configs[1] == {
        "config_name": "evidence_solutions",
        "data_files": [{"split": "train", "path": "evidence/solutions/part-*.parquet"}],
    }
    assert 'revision="v1.0.0"' in files["README.md"].decode()


def test_a_relabelled_run_publishes_its_parent_evidence(tmp_path: Path, hub: FakeHub):
    parent = make_run(tmp_path / "p")
    run = make_run(tmp_path / "c", lineage={"parent_run": str(parent), "evidence": f"{parent}/evidence"})
    shutil.rmtree(run / "evidence")  # `annotate` reads the parent's evidence and writes none of its own
    plan = publish(run, REPO, endpoint=hub.url, dry_run=True, include_evidence=True)
    staged = Path(plan["staging_dir"]) / "evidence/solutions/part-00000-of-00001.parquet"
    assert staged.read_bytes() == (parent / "evidence/solutions/part-00000-of-00001.parquet").read_bytes()

    orphan = make_run(tmp_path / "o", lineage={"parent_run": str(tmp_path / "gone")})
    shutil.rmtree(orphan / "evidence")
    with pytest.raises(PublishError, match="include_evidence, but neither the run nor its parent"):
        publish(orphan, REPO, endpoint=hub.url, dry_run=True, include_evidence=True)
    assert hub.requests == []


def test_card_of_an_imported_run(tmp_path: Path):
    run = make_run(tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    for key in ("config", "engine", "lineage"):
        del manifest[key]
    manifest["command"] = "import"
    manifest["import"] = {"format": "prm800k", "source": "phase2.jsonl", "neutral": "negative", "num_shards": 2}
    (run / "manifest.json").write_text(json.dumps(manifest))
    text = write_dataset_card(run).read_text()
    assert "imported from `prm800k` records" in text and "neutral: negative" in text
    assert card_table(text)["steps"] == str(manifest["counts"]["steps"])


def test_dry_run_makes_no_request_and_writes_the_exact_staging_folder(tmp_path: Path, hub: FakeHub, capsys):
    run = make_run(tmp_path)
    plan = publish(run, REPO, token=TOKEN, endpoint=hub.url, dry_run=True)
    assert hub.requests == []
    staging = Path(plan["staging_dir"])
    assert staging == run / "_publish" / VERSION
    on_disk = {p.relative_to(staging).as_posix(): p.read_bytes() for p in staging.rglob("*") if p.is_file()}
    assert on_disk == staged_expectation(run)
    assert plan["files"] == [
        {"path": path, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        for path, content in sorted(on_disk.items())
    ]
    out = capsys.readouterr().out
    assert "dry run: no request made" in out and f"branch:   {BRANCH}" in out and f"tag:      {VERSION}" in out
    for entry in plan["files"]:
        assert f"sha256:{entry['sha256']}" in out and entry["path"] in out
    assert read_record(run) is None  # nothing was published
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(PublishError, match="not empty and not an earlier staging folder"):
        publish(run, REPO, endpoint=hub.url, dry_run=True, staging_dir=busy)
    assert (busy / "notes.txt").exists()

    # The dry run's folder is what a real publish sends.
    publish(run, REPO, token=TOKEN, endpoint=hub.url)
    commit = next(r for r in hub.requests if "/commit/" in r.path)
    assert {
        line["value"]["path"]: base64.b64decode(line["value"]["content"]) for line in commit.ndjson()[1:]
    } == on_disk


def test_cli_registers_publish_with_func(tmp_path: Path, hub: FakeHub, capsys, monkeypatch: pytest.MonkeyPatch):
    parser = argparse.ArgumentParser()
    add_publish_commands(parser.add_subparsers(dest="command", required=True))
    run = make_run(tmp_path)
    args = parser.parse_args(["publish", str(run), "--repo", REPO, "--dry-run", "--endpoint", hub.url])
    assert args.func(args, []) == 0 and hub.requests == []
    assert "publish plan (dry run" in capsys.readouterr().out

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    args = parser.parse_args(["publish", str(run), "--repo", REPO, "--version", "v2", "--endpoint", hub.url])
    assert args.func(args, []) == 0
    assert f"published {REPO}@v2 (branch version/v2," in capsys.readouterr().out
    assert args.func(args, []) == 2  # the same version again
    assert "publish refused" in capsys.readouterr().err

    (run / "manifest.json").unlink()
    args = parser.parse_args(["publish", str(run), "--repo", REPO, "--endpoint", hub.url])
    assert args.func(args, []) == 2
    assert "unfinished" in capsys.readouterr().err


# ---------------------------------------------------------------- a real run, when the tiny model is there


@pytest.mark.slow
def test_publish_a_real_demo_run(tmp_path: Path, hub: FakeHub, tiny_model_dir: Path):
    repo_root = Path(__file__).resolve().parent.parent
    out = tmp_path / "demo"
    command = [sys.executable, "run.py", "demo", "--output", str(out), "--problems", "4"]
    command += ["--set", "search.num_solutions=2", "--set", "search.completions_per_step=2"]
    subprocess.run(command, cwd=repo_root, check=True, capture_output=True, timeout=900)
    (manifest_path,) = out.glob("schema_v*/cfg_*/manifest.json")  # versioned run folder (docs/infrastructure.md §3.2)
    run = manifest_path.parent
    manifest = json.loads(manifest_path.read_text())

    text = write_dataset_card(run).read_text()
    table = card_table(text)
    assert table["steps"] == str(manifest["counts"]["steps"])
    assert table["dead letters"] == str(manifest["counts"]["dead_lettered"])

    result = publish(run, REPO, token=TOKEN, endpoint=hub.url)
    assert hub.repos[REPO].tags == {default_version(manifest): result["commit_oid"]}
    assert hub.files(result["tag"]) == {
        **staged_expectation(run),
        ".gitattributes": hub.files("main")[".gitattributes"],
    }
    published = hub.files(result["tag"])
    assert str(tmp_path).encode() not in published["manifest.json"] + published["README.md"]  # no local path
