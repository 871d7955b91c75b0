"""Shared helpers for the benchmarks: demo problems on disk, configs, reading a run's tables."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import pyarrow.parquet as pq  # noqa: E402

from schemas.config import Config, load_config  # noqa: E402
from schemas.records import SamplingParams  # noqa: E402


def write_problems(path: Path, n: int, seed: int, min_steps: int = 2, max_steps: int = 6) -> Path:
    from domains.arithmetic import generate_problems

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = generate_problems(n, seed, min_steps=min_steps, max_steps=max_steps)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return path


def demo_config(problems: Path, overrides: list[str], preset: str = "demo.yaml") -> Config:
    return load_config(REPO_ROOT / "configs" / preset, [f"input.path={problems}", *overrides])


def read_table(folder: Path, pattern: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob(pattern)):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def read_problems(config: Config) -> dict[str, dict[str, Any]]:
    """The run's input problems (the JSONL `write_problems` made), by problem id."""
    rows = (json.loads(line) for line in Path(config.input.path).read_text().splitlines())
    return {row["problem_id"]: row for row in rows}


def base_sampling(config: Config) -> SamplingParams:
    """The run's sampling parameters without a seed (each request derives its own)."""
    s = config.sampling
    return SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=tuple(s.stop))


def warm_up(config: Config, problems: int = 64) -> None:
    """One untimed engine call on other problems, so that the pipeline and the raw replay both meet a warm engine
    (the first calls of a fresh vLLM engine on CPU run well below its steady speed)."""
    from domains.arithmetic import generate_problems
    from engines import get_engine
    from engines.prompts import PromptRenderer
    from schemas.records import Request

    renderer = PromptRenderer(config.policy)
    base = base_sampling(config)
    requests = [
        Request(renderer.render(p["question"]), 8, replace(base, seed=i), f"warm-up/{i}")
        for i, p in enumerate(generate_problems(problems, seed=987_654))
    ]
    get_engine(config.policy).generate(requests)


def raw_generate(config: Config, requests: list[Any]) -> dict[str, Any]:
    """One `vllm.LLM.generate` over `requests`, as a user would call it: its wall time, generated tokens, and its
    engine steps by sequences in flight (counted by wrapping the LLMEngine's `step` for this call only)."""
    import time

    from engines import get_engine
    from engines.vllm_engine import sampling_params_of

    engine = get_engine(config.policy)
    llm = engine._llm
    core = llm.llm_engine
    capacity = config.policy.max_num_seqs
    steps: Counter[int] = Counter()
    step = core.step

    def counted_step() -> Any:
        steps[min(core.get_num_unfinished_requests(), capacity)] += 1
        return step()

    core.step = counted_step
    try:
        started = time.perf_counter()
        outputs = llm.generate([r.prompt for r in requests], [sampling_params_of(r) for r in requests], use_tqdm=False)
        wall = time.perf_counter() - started
    finally:
        del core.step
    tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    return {"wall_s": wall, "tokens": tokens, "step_fill": step_fill(Counter(), steps, capacity)}


def step_log(config: Config) -> Counter:
    """The engine's steps so far by sequences in flight (`VLLMEngine.step_sequences`); empty for other engines."""
    from engines import get_engine

    return Counter(getattr(get_engine(config.policy), "step_sequences", {}))


def step_fill(before: Counter, after: Counter, capacity: int) -> dict[str, Any]:
    """Per-step batch fill between two step logs: sequences in flight at each engine step / capacity."""
    from engines.driver import DriverStats

    steps = DriverStats(call_sequences=list((after - before).elements()))
    if not steps.call_sequences:
        return {}
    fill = steps.batch_fill(capacity)  # the driver's own mean and p10, over steps instead of calls
    return {"steps": len(steps.call_sequences), "mean": round(fill["mean"], 4), "p10": fill["p10"]}
