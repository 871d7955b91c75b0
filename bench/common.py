"""Shared helpers for the benchmarks: problems on disk, configs, runs made once and read back, reading a run's
tables, the requests a run sent (for the raw-generate replay) and the fingerprint of a policy."""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout holds the JSON figures alone
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import pyarrow.parquet as pq  # noqa: E402

from commands.publish import file_sha256  # noqa: E402
from schemas.config import Config, load_config  # noqa: E402
from schemas.records import Request, SamplingParams, derive_seed  # noqa: E402


def generate_problems(domain: str, n: int, seed: int, **options: Any) -> list[dict[str, Any]]:
    """`n` problems of `domains.<domain>` (arithmetic, chains) for `seed`; `options` go to its generator."""
    return importlib.import_module(f"domains.{domain}").generate_problems(n, seed, **options)


def write_problems(
    path: Path, n: int, seed: int, min_steps: int = 2, max_steps: int = 6, domain: str = "arithmetic"
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = generate_problems(domain, n, seed, min_steps=min_steps, max_steps=max_steps)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return path


def demo_config(problems: Path, overrides: list[str], preset: str = "demo.yaml") -> Config:
    return load_config(REPO_ROOT / "configs" / preset, [f"input.path={problems}", *overrides])


def read_table(folder: Path, pattern: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """The rows of a run's table, every column or only `columns` (a large evidence table reads faster)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob(pattern)):
        rows.extend(pq.read_table(path, columns=columns).to_pylist())
    return rows


def read_problems(config: Config) -> dict[str, dict[str, Any]]:
    """The run's input problems (the JSONL `write_problems` made), by problem id."""
    rows = (json.loads(line) for line in Path(config.input.path).read_text().splitlines())
    return {row["problem_id"]: row for row in rows}


def base_sampling(config: Config) -> SamplingParams:
    """The run's sampling parameters without a seed (each request derives its own)."""
    s = config.sampling
    return SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=tuple(s.stop))


def warm_up(config: Config, problems: int = 64, domain: str = "arithmetic") -> None:
    """One untimed engine call on other problems, so that the pipeline and the raw replay both meet a warm engine
    (the first calls of a fresh vLLM engine on CPU run well below its steady speed)."""
    from engines import get_engine
    from engines.prompts import PromptRenderer
    from schemas.records import Request

    renderer = PromptRenderer(config.policy)
    base = base_sampling(config)
    requests = [
        Request(renderer.render(p["question"]), 8, replace(base, seed=i), f"warm-up/{i}")
        for i, p in enumerate(generate_problems(domain, problems, seed=987_654))
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


def rollout_budget(text: str) -> int | str:
    """`--rollout-budget`: `auto` (sized from the root's longest rollout, docs/omegaprm.md) or a whole number."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number, got {text!r}") from None


class Runs:
    """Pipeline runs under one folder, each made once: a finished run there with the same config hash and the same
    policy weights is read back, not rerun (so `--work DIR` resumes a benchmark). The engine is warmed before its
    first use only, so a rerun that reads every run back never starts it."""

    def __init__(self, work: Path, warm_up_problems: int = 64, domain: str = "arithmetic") -> None:
        self.work = work
        self.warm_up_problems = warm_up_problems
        self.domain = domain
        self.warm = False

    def ensure_warm(self, config: Config) -> None:
        if not self.warm and self.warm_up_problems > 0:
            warm_up(config, self.warm_up_problems, self.domain)
        self.warm = True

    def run(self, name: str, config: Config) -> tuple[Path, dict[str, Any], dict[str, Any] | None]:
        """The run folder, its manifest, and the per-step engine fill of its search stage (None when read back)."""
        from engines.handler import model_fingerprint
        from pipelines import synthesize

        run = self.work / name
        stored = run / "manifest.json"
        if stored.exists():
            manifest = json.loads(stored.read_text())
            same_weights = manifest["engine"].get("model_sha256") == model_fingerprint(config.policy.model)
            if manifest["config_hash"] == config.config_hash() and same_weights:
                return run, manifest, None
        self.ensure_warm(config)
        before = step_log(config)
        manifest = synthesize.run(config, str(run))
        return run, manifest, step_fill(before, step_log(config), config.policy.max_num_seqs)


COMPLETION_KEYS = ["problem_id", "seed", "completion_index"]  # what tells the completions the engine generated apart


def samples_by_problem(name: str, run: Path, manifest: dict[str, Any], omegaprm: bool) -> dict[str, int]:
    """Samples a run drew, by problem, as generated: OmegaPRM's rollouts of every node; MC's solutions plus the
    completions the engine generated (a prefix several solutions share is sampled once). Checked against the
    engine's own count of sequences."""
    from annotators.mc import generated_completions

    samples: dict[str, int] = defaultdict(int)
    if omegaprm:
        for node in read_table(run / "evidence" / "omegaprm_nodes", "part-*.parquet"):
            samples[node["problem_id"]] += len(node["rollouts"])
    else:
        for solution in read_table(run / "evidence" / "solutions", "part-*.parquet", ["problem_id"]):
            samples[solution["problem_id"]] += 1
        completions = read_table(run / "evidence" / "completions", "part-*.parquet", COMPLETION_KEYS)
        for completion in generated_completions(completions):
            samples[completion["problem_id"]] += 1
    if sum(samples.values()) != manifest["engine"]["sequences"]:
        raise SystemExit(
            f"{name}: counted {sum(samples.values())} samples, the engine generated {manifest['engine']['sequences']}"
        )
    return dict(samples)


def engine_figures(manifest: dict[str, Any]) -> dict[str, Any]:
    engine = manifest["engine"]
    return {
        "batch_fill_mean": engine.get("batch_fill_mean"),
        "batch_fill_p10": engine.get("batch_fill_p10"),
        "engine_calls": engine.get("engine_calls"),
        "fill_unit": engine.get("fill_unit", "call"),
        "mean_sequences_per_call": engine.get("mean_sequences_per_call"),
        "wall_s": manifest["timings"]["wall_seconds"],
    }


def omegaprm_costs(nodes: list[dict[str, Any]]) -> dict[str, int]:
    """Where OmegaPRM's samples went: root estimates of questions that end at once (root MC 0 or 1), roots
    of searched questions, and binary-search probes."""
    roots = {n["problem_id"]: n for n in nodes if n["parent_id"] is None}
    ended = sum(len(n["rollouts"]) for n in roots.values() if n["mc"] in (0.0, 1.0))
    searched = sum(len(n["rollouts"]) for n in roots.values() if n["mc"] not in (0.0, 1.0))
    probes = sum(len(n["rollouts"]) for n in nodes if n["parent_id"] is not None)
    return {
        "questions_root_all_correct": sum(n["mc"] == 1.0 for n in roots.values()),
        "questions_root_all_wrong": sum(n["mc"] == 0.0 for n in roots.values()),
        "samples_roots_ended": ended,
        "samples_roots_searched": searched,
        "samples_probes": probes,
    }


def mc_requests(run: Path, config: Config) -> list[Request]:
    """The requests the MC search sent, rebuilt from the stored evidence (same prompts, n and seeds)."""
    from engines.prompts import PromptRenderer
    from schemas.records import prefix_key

    renderer = PromptRenderer(config.policy)
    base = base_sampling(config)
    problems = read_problems(config)
    requests, seen = [], set()
    for pid, problem in sorted(problems.items()):
        prompt = renderer.render(problem["question"])
        key = "solutions"
        requests.append(
            Request(
                prompt, config.search.num_solutions, replace(base, seed=derive_seed(config.run.seed, pid, key)), key
            )
        )
    for sol in read_table(run / "evidence" / "solutions", "part-*.parquet"):
        prompt = renderer.render(problems[sol["problem_id"]]["question"])
        for t in range(len(sol["steps"]) - 1):
            prefix = sol["text"][: sol["step_ends"][t]]
            if (sol["problem_id"], prefix) in seen:
                continue
            seen.add((sol["problem_id"], prefix))
            key = prefix_key(prefix)
            seed = derive_seed(config.run.seed, sol["problem_id"], key)
            requests.append(Request(prompt + prefix, config.search.completions_per_step, replace(base, seed=seed), key))
    return requests


def omegaprm_requests(nodes: list[dict[str, Any]], config: Config) -> list[Request]:
    """The requests OmegaPRM sent, rebuilt from its search tree (prompt + prefix, n = rollouts, seed)."""
    from engines.prompts import PromptRenderer

    renderer = PromptRenderer(config.policy)
    base = base_sampling(config)
    problems = read_problems(config)
    requests = []
    for node in nodes:
        if node["rollouts"] and node["seed"] is not None:
            prompt = renderer.render(problems[node["problem_id"]]["question"]) + node["prefix"]
            requests.append(Request(prompt, len(node["rollouts"]), replace(base, seed=node["seed"])))
    return requests


def run_requests(run: Path, config: Config) -> list[Request]:
    """The requests a run sent, for the raw-generate replay."""
    if config.search.method == "omegaprm":
        return omegaprm_requests(read_table(run / "evidence" / "omegaprm_nodes", "part-*.parquet"), config)
    return mc_requests(run, config)


def search_stage_wall(run: Path) -> float:
    """Seconds the run's search stage spent in engine calls (its `_work/engine_stats.json`)."""
    return sum(b["wall_seconds"] for b in json.loads((run / "_work" / "engine_stats.json").read_text()))


def raw_ratio(run: Path, requests: list[Request], tokens: int, config: Config) -> dict[str, Any]:
    """Generated tokens/s of the run's search stage against one raw `LLM.generate` of the same requests."""
    search_wall = search_stage_wall(run)
    raw = raw_generate(config, requests)
    return {
        "search_stage_tokens_per_s": round(tokens / search_wall, 1),
        "raw_tokens_per_s": round(raw["tokens"] / raw["wall_s"], 1),
        "ratio_search_to_raw": round((tokens / search_wall) / (raw["tokens"] / raw["wall_s"]), 3),
        "raw_step_fill": raw["step_fill"],
    }


def policy_fingerprint(model: str) -> dict[str, Any]:
    """What fixes a local policy: the sha256 of its weights file and of each file of its `recipe/` folder, and
    `recipe_sha256`, one sha256 over the sorted recipe files (each file's path, a NUL, its sha256, a newline)."""
    folder = Path(model) if Path(model).is_dir() else REPO_ROOT / model
    weights = sorted(folder.glob("*.safetensors"))
    recipe = sorted(p for p in (folder / "recipe").rglob("*") if p.is_file())
    files = {str(p.relative_to(folder / "recipe")): file_sha256(p) for p in recipe}
    digest = hashlib.sha256()
    for name, sha in sorted(files.items()):
        digest.update(f"{name}\0{sha}\n".encode())
    return {
        "model": model,
        "weights": {p.name: file_sha256(p) for p in weights},
        "recipe_files": files,
        "recipe_sha256": digest.hexdigest() if files else None,
    }
