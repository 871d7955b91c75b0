"""The OpenAI-compatible engine: `/v1/completions` on any server (`vllm serve`, SGLang, a hosted judge).

One HTTP call per request (`prompt`, `n`, `seed`, `temperature`, `top_p`, `max_tokens`, `stop`), sent concurrently
from a bounded thread pool; results come back in request order. Against `vllm serve`, choice i is sampled with
seed `seed + i` (the server runs the same V1 engine as `VLLMEngine`), which is what `Sample.seed` records.

Per-choice token counts (`usage` only holds totals over the n choices), chosen by `extra.token_count`:
- `"token_ids"` (default): vLLM's `return_token_ids` extension; `len(choice.token_ids)` is exactly
  `VLLMEngine`'s `n_tokens` (EOS and the token that completed a stop string included).
- `"logprobs"`: OpenAI-standard `logprobs=0`; the length of `choice.logprobs.tokens` (same tokens on vLLM).
- `"usage"`: send nothing extra; exact for n=1 (`usage.completion_tokens`), otherwise the total split over the
  choices in proportion to their text length (an estimate, for servers that offer nothing better).
A server that ignores the requested field falls back to the `"usage"` rule.

Other `extra` keys: `concurrency` (parallel HTTP calls, default 16), `extra_body` (sent with every request).

`stream()` is the request-level form (`engines.base.RequestStream`) for the request-level driver: each submitted
request is one HTTP call on the same bounded pool, and `step()` returns the requests whose calls have finished
(waiting for the first when none has), so a search's next round goes to the server while the others' calls run;
the server's continuous batching does the rest.

Retries: one layer, the driver's (`engines.driver`: `policy.max_retries` attempts with `policy.backoff_s` backoff,
then each search alone). The OpenAI client's own retries are off (`max_retries=0`): left on, its default 2 retries
inside the driver's attempts inside Dataflow's 4 bundle attempts would multiply into dozens of calls per request
before a failure surfaces. Beam's bundle retries stay, for a worker that dies.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Hashable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from engines.base import EngineError
from engines.prompts import count_tokens, load_tokenizer, token_offsets
from schemas.config import EngineConfig
from schemas.records import Request, Sample

log = logging.getLogger(__name__)

TOKEN_COUNT_MODES = ("token_ids", "logprobs", "usage")


class OpenAIEngine:
    """`Engine` over an OpenAI-compatible completions endpoint."""

    name = "openai"

    def __init__(self, config: EngineConfig) -> None:
        from openai import OpenAI

        if not config.base_url:
            raise ValueError("the openai engine needs base_url (e.g. http://127.0.0.1:8000/v1)")
        self.config = config
        self.model = config.model  # the served model name, exactly as the server knows it
        self.token_count = str(config.extra.get("token_count", "token_ids"))
        if self.token_count not in TOKEN_COUNT_MODES:
            raise ValueError(f"extra.token_count: {self.token_count!r} is not one of {', '.join(TOKEN_COUNT_MODES)}")
        self.concurrency = max(1, int(config.extra.get("concurrency", 16)))
        self._extra_body = dict(config.extra.get("extra_body", {}))
        # No client retries: the driver is the one retry layer (see the module doc).
        self._client = OpenAI(
            base_url=config.base_url,
            api_key=os.environ.get(config.api_key_env) or "EMPTY",
            timeout=config.request_timeout_s,
            max_retries=0,
        )
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai-engine")
        self._tokenizer: Any = None

    def generate(self, requests: Sequence[Request]) -> list[list[Sample]]:
        """One concurrent HTTP call per request; `request.n` samples per request, in request order."""
        return list(self._pool.map(self._complete, requests))

    @contextlib.contextmanager
    def stream(self) -> Iterator[_OpenAIStream]:
        """Requests sent one by one as they come, answered as their calls finish (`engines.base.RequestStream`).
        Calls still running at the end are abandoned: their answers are dropped."""
        stream = _OpenAIStream(self)
        try:
            yield stream
        finally:
            stream.abort()

    def _complete(self, request: Request) -> list[Sample]:
        if request.n <= 0:
            return []
        sampling = request.sampling
        kwargs: dict[str, Any] = {
            "model": self.model,
            "prompt": request.prompt,
            "n": request.n,
            "seed": sampling.seed,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.stop:
            kwargs["stop"] = list(sampling.stop)
        extra_body = dict(self._extra_body)
        if self.token_count == "token_ids":
            extra_body["return_token_ids"] = True
        elif self.token_count == "logprobs":
            kwargs["logprobs"] = 0
        if extra_body:
            kwargs["extra_body"] = extra_body
        response = self._client.completions.create(**kwargs)
        choices = sorted(response.choices, key=lambda c: c.index)
        if len(choices) != request.n:
            raise EngineError(f"{self.model}: asked for {request.n} choices, got {len(choices)}")
        counts = choice_token_counts(choices, response.usage)
        prompt_ids = getattr(choices[0], "prompt_token_ids", None)
        prompt_tokens = len(prompt_ids) if prompt_ids else getattr(response.usage, "prompt_tokens", 0) or 0
        return [
            Sample(
                text=choice.text,
                finish_reason=choice.finish_reason if choice.finish_reason in ("stop", "length") else "error",
                n_tokens=count,
                prompt_tokens=prompt_tokens,
                seed=sampling.seed + i,
            )
            for i, (choice, count) in enumerate(zip(choices, counts, strict=True))
        ]

    def _tok(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.config.model, self.config.revision)
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        """Number of tokens of `text`, with the tokenizer of `config.model` loaded locally on first use."""
        return count_tokens(self._tok(), text)

    def token_offsets(self, text: str) -> list[int]:
        """Character offsets of the token boundaries of `text` (see `engines.prompts.token_offsets`)."""
        return token_offsets(self._tok(), text)

    def close(self) -> None:
        """Stop the thread pool and close the HTTP client."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


class _OpenAIStream:
    """`OpenAIEngine.stream()`: one future per submitted request on the engine's pool."""

    def __init__(self, engine: OpenAIEngine) -> None:
        self._engine = engine
        self._live: dict[Future[list[Sample]], tuple[Hashable, Request]] = {}
        self._ready: list[tuple[Hashable, list[Sample]]] = []

    def submit(self, tag: Hashable, request: Request) -> None:
        if request.n <= 0:
            self._ready.append((tag, []))
            return
        self._live[self._engine._pool.submit(self._engine._complete, request)] = (tag, request)

    def step(self) -> list[tuple[Hashable, list[Sample]]]:
        """Answers of every call finished so far (waits for the first when none is); a failed call raises, and
        the driver then aborts the stream and retries its searches one by one."""
        done, self._ready = self._ready, []
        if not self._live:
            return done
        if not done:
            wait(list(self._live), return_when=FIRST_COMPLETED)
        for future in [f for f in self._live if f.done()]:
            tag, _ = self._live.pop(future)
            done.append((tag, future.result()))
        return done

    def in_flight(self) -> int:
        return sum(request.n for _, request in self._live.values()) + sum(len(s) for _, s in self._ready)

    def abort(self) -> None:
        for future in self._live:
            future.cancel()  # queued calls never start; running ones finish and are dropped
        self._live.clear()
        self._ready.clear()


def choice_token_counts(choices: Sequence[Any], usage: Any) -> list[int]:
    """Generated tokens per choice: token ids, else logprob tokens, else the usage total (see module doc)."""
    counts: list[int | None] = []
    for choice in choices:
        token_ids = getattr(choice, "token_ids", None)
        logprob_tokens = getattr(getattr(choice, "logprobs", None), "tokens", None)
        counts.append(
            len(token_ids) if token_ids is not None else len(logprob_tokens) if logprob_tokens is not None else None
        )
    if all(count is not None for count in counts):
        return [int(count) for count in counts]  # type: ignore[arg-type]
    total = int(getattr(usage, "completion_tokens", 0) or 0)
    if len(choices) == 1:
        return [total]
    log.debug("server gave no per-choice token counts; splitting usage.completion_tokens by text length")
    return split_total(total, [len(choice.text or "") for choice in choices])


def split_total(total: int, weights: list[int]) -> list[int]:
    """Split `total` into integers proportional to `weights` (largest remainder; the parts sum to `total`)."""
    if not weights:
        return []
    weight_sum = sum(weights)
    if weight_sum == 0:
        weights, weight_sum = [1] * len(weights), len(weights)
    shares = [total * w / weight_sum for w in weights]
    parts = [int(share) for share in shares]
    by_remainder = sorted(range(len(weights)), key=lambda i: shares[i] - parts[i], reverse=True)
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts
