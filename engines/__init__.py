"""Generation backends behind one contract (`engines.base.Engine`).

`make_engine(config)` builds a fresh engine; `get_engine(config)` returns the process's shared one for that
config (Beam DoFn instances and tests in one process then load the model once); `close_engines()` releases them.
Backend libraries (vllm, openai, transformers) are imported only when their engine is built.
"""

from __future__ import annotations

import dataclasses
import threading

from engines.base import Engine, EngineError, with_retries
from engines.prompts import PromptRenderer, resolve_model_path
from schemas.config import EngineConfig, canonical_json

__all__ = [
    "Engine",
    "EngineError",
    "PromptRenderer",
    "close_engines",
    "get_engine",
    "make_engine",
    "resolve_model_path",
    "with_retries",
]

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def resolved_config(config: EngineConfig) -> EngineConfig:
    """`config` with a local model folder made absolute (cwd, then repo root); openai keeps the served name."""
    if config.engine == "openai":
        return config
    return dataclasses.replace(config, model=resolve_model_path(config.model))


def make_engine(config: EngineConfig) -> Engine:
    """A new engine for `config.engine` (vllm | openai | transformers)."""
    config = resolved_config(config)
    if config.engine == "vllm":
        from engines.vllm_engine import VLLMEngine

        return VLLMEngine(config)
    if config.engine == "openai":
        from engines.openai_engine import OpenAIEngine

        return OpenAIEngine(config)
    if config.engine == "transformers":
        from engines.hf_engine import TransformersEngine

        return TransformersEngine(config)
    raise ValueError(f"unknown engine {config.engine!r} (known: vllm, openai, transformers)")


def engine_key(config: EngineConfig) -> str:
    """The cache key of an engine: the canonical JSON of its resolved config."""
    return canonical_json(dataclasses.asdict(resolved_config(config)))


def get_engine(config: EngineConfig) -> Engine:
    """The process-wide engine for `config`, built on first use (loading a model twice would double memory)."""
    key = engine_key(config)
    with _LOCK:  # Beam may set up several DoFn instances at once in threads of one process
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = make_engine(config)
        return engine


def close_engines() -> None:
    """Close and forget every cached engine."""
    with _LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.close()
