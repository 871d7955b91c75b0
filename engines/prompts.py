"""Prompt rendering and tokenizer helpers shared by the engines.

`PromptRenderer.render(question)` is the policy prompt of a problem. A **continuation prefix** (the prompt of an
MC rollout or an OmegaPRM node) is simply `render(question) + solution_text[:step_end]`: solutions are sampled as
raw continuations of the rendered prompt, so re-feeding the prompt plus a cut of the solution text continues the
same sequence (`PromptRenderer.render_prefix`). Cuts are character offsets; `token_offsets` gives the offsets of
token boundaries when a search wants to cut at token midpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas.config import EngineConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


def resolve_model_path(model: str) -> str:
    """A local model folder as an absolute path (tried against the cwd, then the repo root); else `model` as is.

    Configs name the shipped model `models/tiny-arith`, which must work from any working directory; a name that
    is no local folder (a Hub id such as `Qwen/Qwen2.5-Math-7B-Instruct`) is returned unchanged.
    """
    if not model:
        return model
    path = Path(model).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate.resolve())
    return model


def load_tokenizer(source: str, revision: str | None = None) -> Any:
    """A Hugging Face tokenizer for `source` (a folder or Hub id), imported lazily."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(source), revision=revision)


def count_tokens(tokenizer: Any, text: str) -> int:
    """Number of tokens of `text` on its own (no BOS/EOS added)."""
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def token_offsets(tokenizer: Any, text: str) -> list[int]:
    """Character offsets of the token boundaries of `text`: `[0, b1, ..., len(text)]`, strictly increasing.

    Token i covers `text[b_i:b_{i+1}]`, so there are `len(result) - 1` tokens (tokens that share characters, such
    as the bytes of one multi-byte character, merge into one span). Built from the end offsets of a fast
    tokenizer's offset mapping, which stay a partition even when the tokenizer trims leading spaces from spans.
    """
    if not text:
        return [0]
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ends = {min(end, len(text)) for _start, end in encoded["offset_mapping"] if end > 0}
    ends.add(len(text))
    return [0, *sorted(ends)]


class PromptRenderer:
    """Turns a question (or a judge's user message) into the exact prompt text an engine receives.

    Raw mode (default): `config.prompt_template.format(question=question)`; literal braces in the template must
    be doubled. Chat mode (`config.chat_template=True`): the tokenizer's chat template over
    `[system?, user]` with `add_generation_prompt=True`, the template text being the user message.
    """

    def __init__(self, config: EngineConfig, tokenizer_source: str | None = None) -> None:
        self.config = config
        self.tokenizer_source = tokenizer_source or config.model
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        """The tokenizer whose chat template is used; loaded on first use (raw mode never loads it)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_source, self.config.revision)
        return self._tokenizer

    def render(self, question: str) -> str:
        """The policy prompt for `question`."""
        user = self.config.prompt_template.format(question=question)
        return self._chat(user) if self.config.chat_template else user

    def render_user(self, text: str) -> str:
        """A prompt whose user message is `text` as it is (judge prompts); raw mode returns `text` unchanged."""
        return self._chat(text) if self.config.chat_template else text

    def render_prefix(self, question: str, solution_text: str, step_end: int) -> str:
        """The prompt that continues `solution_text` after its first `step_end` characters."""
        return self.render(question) + solution_text[:step_end]

    def _chat(self, user: str) -> str:
        messages = []
        if self.config.system_prompt:
            messages.append({"role": "system", "content": self.config.system_prompt})
        messages.append({"role": "user", "content": user})
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        # Engines tokenize prompts with add_special_tokens=True; a BOS written by the template would be doubled.
        bos = getattr(self.tokenizer, "bos_token", None)
        if bos and text.startswith(bos) and self._adds_bos():
            text = text[len(bos) :]
        return text

    def _adds_bos(self) -> bool:
        ids = self.tokenizer("x", add_special_tokens=True)["input_ids"]
        return bool(ids) and ids[0] == self.tokenizer.bos_token_id
