"""Reruns without regeneration: relabel from evidence, larger budgets, killed-and-restarted runs."""

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from schemas.config import ConfigError, config_from_dict

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "tiny-arith"

pytestmark = pytest.mark.skipif(not (MODEL / "config.json").exists(), reason="the tiny model is not in models/")


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    from domains.arithmetic import generate_problems

    path = tmp_path_factory.mktemp("in") / "problems.jsonl"
    rows = generate_problems(6, seed=21)
    path.write_text("".join(json.dumps(p) + "\n" for p in rows) + "{broken\n")
    return path


def config(problems, *overrides):
    base = {
        "run": {"seed": 3},
        "input": {"path": str(problems), "id_field": "problem_id", "answer_format": "plain"},
        "policy": {"model": str(MODEL)},
        "sampling": {"max_tokens": 64},
        "steps": {"splitter": "step_markers"},
        "search": {"num_solutions": 2, "completions_per_step": 2, "problems_per_batch": 3},
        "output": {"num_shards": 2},
    }
    return config_from_dict(base, list(overrides))


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for sub in ("data", "filtered", "dead_letters")
        for p in sorted((folder / sub).glob("*"))
    }


def rows(folder: Path) -> list[dict]:
    return [r for p in sorted(folder.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


@pytest.fixture(scope="module")
def parent(problems, tmp_path_factory, vllm_engine):
    from pipelines import synthesize

    root = tmp_path_factory.mktemp("root")
    manifest = synthesize.run(config(problems), str(root / "parent"))
    return root, manifest


RELABEL = [
    "label.hard_rule=threshold",
    "label.threshold=0.4",
    "annotators.arithmetic={}",
    "augment.compression.enabled=true",
]


def test_relabel_makes_no_engine_call_and_equals_a_fresh_run(problems, parent, monkeypatch):
    from pipelines import annotate, synthesize

    root, _ = parent
    new = config(problems, *RELABEL)
    import engines

    def forbidden(*args, **kwargs):
        raise AssertionError("a relabel must not build an engine")

    monkeypatch.setattr(engines, "make_engine", forbidden)
    monkeypatch.setattr(engines, "get_engine", forbidden)
    manifest = annotate.run(str(root / "parent"), new, str(root / "relabel"))
    assert manifest["engine"]["engine_calls"] == 0
    assert manifest["lineage"]["parent_run"] == str(root / "parent")
    assert manifest["counts"]["balanced"] is True
    monkeypatch.undo()
    # The same config run from scratch (its cache shared with the parent, so no new generation either).
    fresh = synthesize.run(new, str(root / "fresh"))
    assert fresh["engine"]["cache_sample_misses"] == 0
    assert digests(root / "relabel") == digests(root / "fresh")
    relabelled = rows(root / "relabel" / "data")
    assert all(r["label_policy"] == "mc>0.4" for r in relabelled)
    assert any(r["id"].endswith("/hnc") for r in relabelled) or all(len(r["completions"]) < 2 for r in relabelled)
    assert all("arithmetic_labels" in r for r in relabelled)


def test_relabel_refuses_configs_that_need_generation(problems, parent):
    from pipelines import annotate

    root, _ = parent
    for overrides, message in [
        (["search.completions_per_step=4"], r"search differs \(search\.completions_per_step\)"),
        (["policy.dtype=float32"], r"policy differs"),
        (["run.seed=4"], r"run\.seed differs"),
        (["judge.enabled=true"], r"evidence holds no critiques"),
    ]:
        with pytest.raises(ConfigError, match=message):
            annotate.run(str(root / "parent"), config(problems, *overrides), str(root / "never"))
    with pytest.raises(ConfigError, match="nowhere: no such run folder"):
        annotate.run(str(root / "nowhere"), config(problems), str(root / "never"))
    (root / "unfinished").mkdir()
    with pytest.raises(ConfigError, match="not a finished run"):
        annotate.run(str(root / "unfinished"), config(problems), str(root / "never"))


def test_a_doubled_budget_generates_only_the_new_samples(problems, parent):
    from pipelines import synthesize

    root, first = parent
    second = synthesize.run(config(problems, "search.num_solutions=4"), str(root / "double"))
    old = {(r["problem_id"], r["seed"]) for r in rows(root / "parent" / "evidence" / "solutions")}
    new_solutions = [
        r for r in rows(root / "double" / "evidence" / "solutions") if (r["problem_id"], r["seed"]) not in old
    ]
    assert len(new_solutions) == 6 * 2

    # Every sample of the first run was reused; misses are exactly the samples the first run never drew.
    def sample_keys(run):
        keys = {(r["problem_id"], "", r["seed"]) for r in rows(run / "evidence" / "solutions")}
        sols = {(r["problem_id"], r["solution_index"]): r for r in rows(run / "evidence" / "solutions")}
        for c in rows(run / "evidence" / "completions"):
            sol = sols[(c["problem_id"], c["solution_index"])]
            keys.add((c["problem_id"], sol["text"][: sol["step_ends"][c["step_index"]]], c["seed"]))
        return keys

    before, after = sample_keys(root / "parent"), sample_keys(root / "double")
    assert before <= after
    assert second["engine"]["cache_sample_misses"] == len(after - before)
    assert second["engine"]["cache_sample_hits"] >= len(before)


def test_a_killed_run_restarts_from_what_it_generated(problems, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        json.dumps(
            {
                "run": {"seed": 9},
                "input": {"path": str(problems), "id_field": "problem_id", "answer_format": "plain"},
                "policy": {"model": str(MODEL)},
                "sampling": {"max_tokens": 64},
                "steps": {"splitter": "step_markers"},
                "search": {"num_solutions": 4, "completions_per_step": 4, "problems_per_batch": 1},
            }
        )
    )
    cmd = [sys.executable, str(REPO / "run.py"), "synthesize", "--config", str(cfg), "--output", str(tmp_path / "root")]
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cache = tmp_path / "root" / "_cache"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and len(list(cache.glob("part-*.parquet"))) < 2:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):  # the run may have ended on its own already
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = len(list(cache.glob("part-*.parquet")))
    assert kept >= 1, "the killed run left no cached samples"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = (tmp_path / "root" / "schema_v1").glob("cfg_*")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["engine"]["cache_sample_hits"] > 0
    assert manifest["counts"]["balanced"] is True


def test_the_cli_relabels_from_the_parents_own_config(problems, parent):
    # `annotate --from RUN --set ...` with no --config: every generation key comes from the parent's manifest.
    from commands.cli import main

    root, parent_manifest = parent
    argv = ["annotate", "--from", str(root / "parent"), "--output", str(root), "--set", "label.hard_rule=threshold"]
    assert main(argv) == 0
    relabels = [
        json.loads(p.read_text())
        for p in root.glob("schema_v1/cfg_*/manifest.json")
        if json.loads(p.read_text())["config"]["label"]["hard_rule"] == "threshold"
    ]
    assert len(relabels) == 1
    (manifest,) = relabels
    assert manifest["engine"]["engine_calls"] == 0 and manifest["lineage"]["parent_run"] == str(root / "parent")
    expected = dict(parent_manifest["config"], label={**parent_manifest["config"]["label"], "hard_rule": "threshold"})
    assert manifest["config"] == expected
