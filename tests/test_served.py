"""The served engine (`engines.served`): one `vllm serve` per worker VM shared by every SDK process over HTTP.

Fast tests use a stub server (`tests/stub_openai_server.py`, a real subprocess answering `/health` and
`/v1/completions`); the slow one starts `vllm serve` on the tiny model and compares it with the in-process engine.
"""

from __future__ import annotations

import dataclasses
import pickle
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from engines import served
from engines.base import BatchStream, open_stream
from engines.driver import run_searches
from engines.handler import EngineHandler
from engines.served import ServedEngine, ServerError, VLLMServer, server_command
from schemas.config import ConfigError, EngineConfig, ResourcesConfig, build
from schemas.records import Request, SamplingParams

REPO_ROOT = Path(__file__).resolve().parent.parent
STUB = str(Path(__file__).with_name("stub_openai_server.py"))
ACCELERATOR = "type:nvidia-l4;count:1;install-nvidia-driver"


def sampling(seed: int) -> SamplingParams:
    return SamplingParams(temperature=1.0, top_p=1.0, max_tokens=40, seed=seed)


def stub_command(starts: Path | None = None):  # noqa: ANN201 - a CommandFor
    return lambda config, port: [sys.executable, STUB, str(port), *([str(starts)] if starts else [])]


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test its own process-level handles and engines; servers it started are stopped afterwards."""
    monkeypatch.setattr(served, "_HANDLES", {})
    monkeypatch.setattr(served, "_ENGINES", {})
    yield
    for _, proxy in served._HANDLES.values():
        proxy.stop()
    for engine in served._ENGINES.values():
        engine.close()


# --- the option and the handler's choice --------------------------------------------------------------------------


def test_sharing_is_on_by_default_with_an_accelerator_and_off_when_told() -> None:
    assert ResourcesConfig().share_engine_across_processes == "auto"
    assert ResourcesConfig().share_engine() is False
    assert ResourcesConfig(accelerator=ACCELERATOR).share_engine() is True
    assert ResourcesConfig(accelerator=ACCELERATOR, share_engine_across_processes=False).share_engine() is False
    assert ResourcesConfig(share_engine_across_processes=True).share_engine() is True
    built = build(ResourcesConfig, {"accelerator": ACCELERATOR, "share_engine_across_processes": "auto"}, "resources")
    assert built.share_engine() is True
    with pytest.raises(ConfigError, match="resources.share_engine_across_processes: expected true, false or auto"):
        ResourcesConfig(share_engine_across_processes="yes").validate("resources")


def test_handler_serves_vllm_when_sharing_and_keeps_it_in_process_when_not(monkeypatch: pytest.MonkeyPatch) -> None:
    import engines.handler as handler_module

    monkeypatch.setattr(served, "served_engine", lambda config: ("served", config.model))
    monkeypatch.setattr(handler_module, "get_engine", lambda config: ("in-process", config.model))
    config = EngineConfig(engine="vllm", model="m")
    on = ResourcesConfig(accelerator=ACCELERATOR).share_engine()
    off = ResourcesConfig(accelerator=ACCELERATOR, share_engine_across_processes=False).share_engine()
    assert EngineHandler(config, share_across_processes=on).load_model() == ("served", "m")
    assert EngineHandler(config, share_across_processes=off).load_model() == ("in-process", "m")
    openai = EngineConfig(engine="openai", model="m", base_url="http://h/v1")
    assert EngineHandler(openai, share_across_processes=True).load_model() == ("in-process", "m")  # already a server


# --- the server's command line ------------------------------------------------------------------------------------


def test_server_command_carries_the_engine_settings() -> None:
    config = EngineConfig(
        model="/models/m",
        revision="abc",
        dtype="float16",
        max_model_len=4096,
        max_num_seqs=128,
        gpu_memory_utilization=0.85,
        enforce_eager=False,
        enable_prefix_caching=False,
        extra={"llm_kwargs": {"tensor_parallel_size": 2, "trust_remote_code": True}, "server_args": ["--x", 1]},
    )
    gpu = server_command(config, 8123, cpu=False, python="py")
    assert gpu[:3] == ["py", "-m", "vllm.entrypoints.openai.api_server"]
    pairs = dict(zip(gpu[3::1], gpu[4::1], strict=False))
    assert pairs["--model"] == pairs["--served-model-name"] == "/models/m"
    assert (pairs["--host"], pairs["--port"], pairs["--dtype"]) == ("127.0.0.1", "8123", "float16")
    assert (pairs["--max-model-len"], pairs["--max-num-seqs"], pairs["--seed"]) == ("4096", "128", "0")
    assert (pairs["--revision"], pairs["--tokenizer-revision"], pairs["--gpu-memory-utilization"]) == ("abc",) * 2 + (
        "0.85",
    )
    assert pairs["--tensor-parallel-size"] == "2"
    assert "--no-enable-prefix-caching" in gpu and "--enforce-eager" not in gpu and "--trust-remote-code" in gpu
    assert gpu[-2:] == ["--x", "1"] and "--kv-cache-memory-bytes" not in gpu

    cpu = server_command(EngineConfig(model="/models/m"), 8123, cpu=True, python="py")
    pairs = dict(zip(cpu[3::1], cpu[4::1], strict=False))
    assert pairs["--kv-cache-memory-bytes"] == str(256 << 20)
    assert pairs["--max-num-batched-tokens"] == str(256 * 256)  # as VLLMEngine on CPU: no prompt split
    assert "--enable-prefix-caching" in cpu and "--enforce-eager" in cpu and "--gpu-memory-utilization" not in cpu


# --- the server's life --------------------------------------------------------------------------------------------


def test_server_handle_is_small_and_picklable() -> None:
    server = VLLMServer(EngineConfig(model="stub"), command_for=stub_command(), poll_s=0.1, start_timeout_s=30)
    try:
        assert server.alive()
        copy = pickle.loads(pickle.dumps(server))
        assert copy.base_url() == server.base_url() and copy.base_url().startswith("http://127.0.0.1:")
        assert copy.process is None and not copy.alive()  # the copy carries the address, not the process
    finally:
        server.stop()
    assert not server.alive()
    server.stop()  # idempotent


def test_server_that_exits_early_fails_with_its_log() -> None:
    dies = lambda config, port: [sys.executable, "-c", "print('no accelerator found'); raise SystemExit(3)"]  # noqa: E731
    with pytest.raises(ServerError, match="exited with code 3 before it was ready.*no accelerator found"):
        VLLMServer(EngineConfig(model="stub"), command_for=dies, poll_s=0.05, start_timeout_s=30)


def test_server_that_never_answers_times_out_and_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[VLLMServer] = []
    real_wait = VLLMServer._wait_ready

    def remember(self: VLLMServer, timeout_s: float, poll_s: float) -> None:
        started.append(self)
        real_wait(self, timeout_s, poll_s)

    monkeypatch.setattr(VLLMServer, "_wait_ready", remember)
    sleeps = lambda config, port: [sys.executable, "-c", "import time; time.sleep(60)"]  # noqa: E731
    with pytest.raises(ServerError, match=r"did not answer /health within 0.5 s"):
        VLLMServer(EngineConfig(model="stub"), command_for=sleeps, poll_s=0.05, start_timeout_s=0.5)
    assert started and started[0].process is None  # stopped, not left running


def test_one_server_per_vm_started_once_and_reused_across_processes(tmp_path: Path, fresh_registry: None) -> None:
    starts = tmp_path / "starts"
    config = EngineConfig(model="stub-once")
    first = served.shared_server(config, path=str(tmp_path), command_for=stub_command(starts), poll_s=0.1)
    again = served.shared_server(config, path=str(tmp_path), command_for=stub_command(starts), poll_s=0.1)
    assert first.base_url() == again.base_url()
    # Another process asks for the same engine: it connects to this one's handle and starts nothing.
    other = textwrap.dedent(f"""
        from engines import served
        from schemas.config import EngineConfig
        refuse = lambda config, port: (_ for _ in ()).throw(AssertionError("a second server was started"))
        print(served.shared_server(EngineConfig(model="stub-once"), path={str(tmp_path)!r}, command_for=refuse).base_url())
    """)
    out = subprocess.run([sys.executable, "-c", other], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == first.base_url()
    assert starts.read_text().splitlines() == ["started"]
    first.stop()  # a server that died after its start is reported, not handed out
    with pytest.raises(ServerError, match="shared vllm serve at http://127.0.0.1:[0-9]+/v1 has stopped"):
        served.served_engine(config, path=str(tmp_path), command_for=stub_command(starts))


# --- the engine each process builds on it -------------------------------------------------------------------------


def test_served_engine_passes_seeds_and_streams_requests(
    tiny_model_dir: Path, tmp_path: Path, fresh_registry: None
) -> None:
    # The tiny model's tokenizer answers the over-long prompt locally; the stub answers the rest.
    config = EngineConfig(model=str(tiny_model_dir), max_model_len=12)
    engine = served.served_engine(config, path=str(tmp_path), command_for=stub_command(), poll_s=0.1)
    assert isinstance(engine, ServedEngine) and engine.config.base_url.startswith("http://127.0.0.1:")
    assert served.served_engine(config, path=str(tmp_path), command_for=stub_command()) is engine
    assert engine.concurrency == config.max_num_seqs
    requests = [
        Request("Q: 1+1=?", 2, sampling(7)),
        Request("Q: 2+2=?", 0, sampling(9)),
        Request("Q: 3=?", 1, sampling(5)),
    ]
    out = engine.generate(requests)
    assert [[s.seed for s in samples] for samples in out] == [[7, 8], [], [5]]
    assert [s.text for s in out[0]] == [" seed=7 prompt=Q: 1+1=?", " seed=8 prompt=Q: 1+1=?"]
    assert out[0][0].n_tokens == len(out[0][0].text)  # token_ids' length, per choice
    long = engine.generate([Request("Q: " + "1+" * 40 + "1=?", 2, sampling(3))])[0]
    assert [(s.finish_reason, s.seed) for s in long] == [("error", 3), ("error", 4)]  # as VLLMEngine answers it

    with open_stream(engine) as stream:
        assert not isinstance(stream, BatchStream)  # its own request-level stream, not generate calls

    def search(prompt: str, seed: int):  # noqa: ANN202 - two rounds, the second built from the first's answer
        first = yield [Request(prompt, 2, sampling(seed))]
        second = yield [Request(first[0][1].text, 1, sampling(seed + 100))]
        return [s.seed for s in first[0]] + [s.seed for s in second[0]]

    outcomes, stats = run_searches([search(f"P{i}", 10 * i) for i in range(6)], engine, request_level=True)
    assert [o.result for o in outcomes] == [[10 * i, 10 * i + 1, 10 * i + 100] for i in range(6)]
    assert stats.unit == "step" and stats.requests == 12
    rounds, _ = run_searches([search(f"P{i}", 10 * i) for i in range(6)], engine)
    assert [o.result for o in rounds] == [o.result for o in outcomes]

    # A refused request fails the stream's step; the driver retries each search alone and only that one fails.
    mixed = [search("P0", 0), search("FAIL", 10), search("P2", 20)]
    outcomes, _ = run_searches(mixed, engine, request_level=True, attempts=1, sleep=lambda s: None)
    assert [o.result for o in outcomes] == [[0, 1, 100], None, [20, 21, 120]]
    assert "400" in (outcomes[1].error or "")


# --- the real server, on CPU ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_served_tiny_model_gives_the_in_process_samples(
    tiny_model_dir: Path, vllm_engine, tmp_path: Path, fresh_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("vllm")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the handle's lock and address files, the server log
    if shutil.which("vllm") is None and not Path(sys.executable).with_name("vllm").exists():
        pytest.skip("the vllm CLI is not installed")
    config = dataclasses.replace(vllm_engine.config, model=str(tiny_model_dir))
    engine = EngineHandler(config, share_across_processes=True).load_model()
    assert isinstance(engine, ServedEngine)
    requests = [Request("Q: 9*9+24-7=?", 3, sampling(11)), Request("Q: 3*4+5=?", 2, sampling(601))]
    expected = vllm_engine.generate(requests)
    assert engine.generate(requests) == expected  # text, finish, token counts, seeds
    with engine.stream() as stream:  # the request-level form gives the same answers
        for i, request in enumerate(requests):
            stream.submit(i, request)
        answers: dict[int, list] = {}
        while stream.in_flight():
            answers.update(stream.step())
    assert [answers[i] for i in range(len(requests))] == expected
