"""Shared test fixtures. Environment first: these must be set before vllm or torch is imported."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # vLLM engine in-process: ~2 s start, not ~14 s
os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 shared cores: one torch thread per test process

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL_DIR = REPO_ROOT / "models" / "tiny-arith"


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The shipped tiny arithmetic policy (`models/tiny-arith`)."""
    if not (TINY_MODEL_DIR / "config.json").exists():
        pytest.skip("models/tiny-arith is missing (build it with `python -m models.build_tiny_model`)")
    return TINY_MODEL_DIR


@pytest.fixture(scope="session")
def vllm_engine(tiny_model_dir: Path) -> Iterator[object]:
    """One in-process vLLM engine on the tiny model for the whole session, shared through `engines.get_engine`."""
    pytest.importorskip("vllm")
    from engines import close_engines, get_engine
    from schemas.config import EngineConfig

    yield get_engine(EngineConfig(engine="vllm", model=str(tiny_model_dir)))
    close_engines()


def _sandbox_problem() -> str:
    from annotators.verifiers.sandbox import isolation_problem

    return isolation_problem()


# Code runs only under the full isolation (bubblewrap, installed by scripts/setup.sh as root). Where it cannot be
# set up, tests that run code skip with the reason; in CI (CI=true) they run and fail instead, loudly.
needs_sandbox = pytest.mark.skipif(
    not os.environ.get("CI") and bool(_sandbox_problem()),
    reason=f"the code sandbox cannot run here: {_sandbox_problem() or 'n/a'}",
)
