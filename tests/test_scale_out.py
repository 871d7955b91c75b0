"""Local scale-out: two worker processes give the same output bytes as one."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "tiny-arith"

pytestmark = pytest.mark.skipif(not (MODEL / "config.json").exists(), reason="the tiny model is not in models/")


def digests(root: Path) -> dict[str, str]:
    (run,) = (root / "schema_v1").glob("cfg_*")
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.suffix in (".parquet", ".jsonl")
    }


def test_two_workers_give_the_same_bytes_as_one(tmp_path):
    from domains.arithmetic import generate_problems

    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(p) + "\n" for p in generate_problems(6, seed=31)))
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}
    common = [
        sys.executable, str(REPO / "run.py"), "synthesize", "--config", str(REPO / "configs" / "demo.yaml"),
        "--set", f"input.path={problems}", "--set", f"policy.model={MODEL}", "--set", "cache.enabled=false",
        "--set", "search.num_solutions=2", "--set", "search.completions_per_step=2",
        "--set", "search.problems_per_batch=2",
    ]  # fmt: skip
    one = subprocess.run(
        [*common, "--output", str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=300
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [*common, "--output", str(tmp_path / "two"), "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = digests(tmp_path / "one"), digests(tmp_path / "two")
    assert any(k.startswith("data/") for k in a)
    assert a == b
