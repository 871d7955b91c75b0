"""The transformers fallback engine: `AutoModelForCausalLM` on CPU, same contract and outputs as vLLM.

Matching vLLM's behaviour:
- The prompt is tokenized with special tokens (BOS), as vLLM does for text prompts.
- Sample i of a request is drawn with its own `torch.Generator` seeded `seed + i` (vLLM's child seeds), and each
  request is decoded in its own forward passes, so a request's samples never depend on the other requests of
  the call. The same (prompt, n, sampling) always gives the same samples.
- A stop string ends the sample and is cut from `text` (vLLM drops it; transformers' `stop_strings` would keep
  it), finish_reason "stop". EOS also ends it with "stop"; `max_tokens` (or `max_model_len`) gives "length".
- `n_tokens` counts the generated tokens up to and including the EOS or the token that completed the stop string.
Sampling is plain temperature + top-p (temperature 0 is greedy), as vLLM's defaults with top_k off. The random
streams differ from vLLM's, so one seed gives different texts on the two engines; each is deterministic on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from engines.base import EngineError
from engines.prompts import count_tokens, resolve_model_path, token_offsets
from schemas.config import EngineConfig
from schemas.records import Request, Sample, SamplingParams

log = logging.getLogger(__name__)


class TransformersEngine:
    """`Engine` backed by transformers; decodes each request's n samples as one batch with a KV cache."""

    name = "transformers"

    def __init__(self, config: EngineConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.model = resolve_model_path(config.model)
        torch.set_num_threads(max(1, config.threads))
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(self.model, revision=config.revision)
        # Each request is decoded unpadded (n copies of one prompt); left padding is for any caller that batches.
        self._tokenizer.padding_side = "left"
        dtype = getattr(torch, config.dtype) if config.dtype not in ("auto", "") else "auto"
        self._model = AutoModelForCausalLM.from_pretrained(self.model, revision=config.revision, dtype=dtype).eval()
        self._eos_ids = _eos_ids(self._model.generation_config.eos_token_id, self._tokenizer.eos_token_id)

    def generate(self, requests: Sequence[Request]) -> list[list[Sample]]:
        """`request.n` samples per request, in request order."""
        return [self._sample(request) for request in requests]

    def _sample(self, request: Request) -> list[Sample]:
        torch = self._torch
        if request.n <= 0:
            return []
        sampling = request.sampling
        prompt_ids = self._tokenizer(request.prompt, return_tensors="pt")["input_ids"]
        prompt_tokens = int(prompt_ids.shape[1])
        budget = min(sampling.max_tokens, self.config.max_model_len - prompt_tokens)
        if budget <= 0:
            raise EngineError(f"prompt of {prompt_tokens} tokens leaves no room in max_model_len")
        n = request.n
        generators = [torch.Generator().manual_seed(sampling.seed + i) for i in range(n)]
        tokens: list[list[int]] = [[] for _ in range(n)]
        texts: list[str | None] = [None] * n
        reasons: list[str | None] = [None] * n
        with torch.inference_mode():
            out = self._model(input_ids=prompt_ids.repeat(n, 1), use_cache=True, logits_to_keep=1)
            for step in range(budget):
                picked = _pick(out.logits[:, -1, :].float(), sampling, generators)
                for i in range(n):
                    if reasons[i] is None:
                        self._advance(i, int(picked[i]), tokens, texts, reasons, sampling.stop)
                        if reasons[i] is None and step + 1 == budget:
                            reasons[i] = "length"
                if all(reason is not None for reason in reasons):
                    break
                out = self._model(input_ids=picked[:, None], past_key_values=out.past_key_values, use_cache=True)
        return [
            Sample(
                text=texts[i] if texts[i] is not None else self._decode(tokens[i]),
                finish_reason=reasons[i] or "length",
                n_tokens=len(tokens[i]),
                prompt_tokens=prompt_tokens,
                seed=sampling.seed + i,
            )
            for i in range(n)
        ]

    def _advance(
        self,
        i: int,
        token: int,
        tokens: list[list[int]],
        texts: list[str | None],
        reasons: list[str | None],
        stop: tuple[str, ...],
    ) -> None:
        """Append one token to sample i and record why it ended, if it did."""
        tokens[i].append(token)
        if token in self._eos_ids:
            texts[i], reasons[i] = self._decode(tokens[i][:-1]), "stop"
            return
        if stop:
            text = self._decode(tokens[i])
            cuts = [text.find(s) for s in stop if s and s in text]
            if cuts:
                texts[i], reasons[i] = text[: min(cuts)], "stop"

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def count_tokens(self, text: str) -> int:
        """Number of tokens of `text` (no special tokens)."""
        return count_tokens(self._tokenizer, text)

    def token_offsets(self, text: str) -> list[int]:
        """Character offsets of the token boundaries of `text` (see `engines.prompts.token_offsets`)."""
        return token_offsets(self._tokenizer, text)

    def close(self) -> None:
        """Drop the model; memory returns to the allocator."""
        self._model = None


def _eos_ids(*values: Any) -> set[int]:
    ids: set[int] = set()
    for value in values:
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


def _pick(logits: Any, sampling: SamplingParams, generators: list[Any]) -> Any:
    """One next token per row: greedy at temperature 0, else temperature + top-p with row i's generator."""
    import torch

    if sampling.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest head whose mass reaches top_p (the first token always stays).
        sorted_probs[(sorted_probs.cumsum(dim=-1) - sorted_probs) > sampling.top_p] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.stack([torch.multinomial(probs[i], 1, generator=generators[i])[0] for i in range(len(generators))])
