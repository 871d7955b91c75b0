"""Label quality on the exact domain: MC first errors of the tiny model's solutions against exact arithmetic.

The floor sits well below what `bench/bench_label_quality.py` measures (see the closing note of issue 3), so it
catches a broken search or labeller, not noise.
"""

import json
from pathlib import Path

import pytest

from schemas.config import load_config

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "tiny-arith"
FLOOR = 0.35  # measured 0.54 on 100 demo problems (bench/bench_label_quality.py); all-correct labeller: 0.26

pytestmark = pytest.mark.skipif(not (MODEL / "config.json").exists(), reason="the tiny model is not in models/")


def test_mc_first_error_agrees_with_exact_arithmetic(tmp_path, vllm_engine):
    from annotators.exact import first_error_agreement
    from commands.verify import run_rows
    from domains.arithmetic import generate_problems
    from pipelines import synthesize

    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(p) + "\n" for p in generate_problems(24, seed=41)))
    config = load_config(
        REPO / "configs" / "demo.yaml", [f"input.path={problems}", "search.num_solutions=4", "cache.enabled=false"]
    )
    manifest = synthesize.run(config, str(tmp_path / "run"))
    rows = [row for _, row in run_rows(tmp_path / "run")]
    report = first_error_agreement(rows)
    assert report["n"] == manifest["counts"]["paths"] > 20
    assert report["agreement"] >= FLOOR, report
    # The manifest's label quality is the same computation.
    assert manifest["label_quality"]["exact_arithmetic"]["mc"]["first_error_agreement"] == round(report["agreement"], 4)
