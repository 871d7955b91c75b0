"""One retry layer for the OpenAI-compatible engine: the driver's; the OpenAI client itself never retries.

A stub `/v1/completions` server answers 503 a set number of times, then a completion, and counts the HTTP calls.
"""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("openai")

from engines.base import EngineError, with_retries  # noqa: E402
from engines.openai_engine import OpenAIEngine  # noqa: E402
from schemas.config import EngineConfig  # noqa: E402
from schemas.records import Request, SamplingParams  # noqa: E402


class Stub:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    state = Stub(failures=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            state.calls += 1
            if state.calls <= state.failures:
                payload, status = {"error": {"message": "overloaded"}}, 503  # a status the client retries by default
            else:
                choices = [
                    {"index": i, "text": "1+1=2", "finish_reason": "stop", "token_ids": [1, 2, 3]}
                    for i in range(body["n"])
                ]
                payload, status = (
                    {
                        "id": "x",
                        "object": "text_completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": choices,
                        "usage": {
                            "prompt_tokens": 4,
                            "completion_tokens": 3 * body["n"],
                            "total_tokens": 4 + 3 * body["n"],
                        },
                    },
                    200,
                )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def engine_for(base_url: str, max_retries: int = 3) -> OpenAIEngine:
    config = EngineConfig(
        engine="openai", model="stub", base_url=base_url, max_retries=max_retries, request_timeout_s=5
    )
    return OpenAIEngine(config)


def test_the_client_does_not_retry_a_failed_call(stub):
    state, url = stub
    state.failures = 1
    engine = engine_for(url)
    with pytest.raises(Exception, match="503|overloaded"):
        engine.generate([Request("Q: 1+1=?", 1, SamplingParams(seed=5))])
    assert state.calls == 1  # the OpenAI client's default (2 retries) would have made 3 calls and succeeded
    engine.close()


def test_the_driver_layer_retries_and_is_the_only_one(stub):
    state, url = stub
    state.failures = 2
    engine = engine_for(url)
    request = Request("Q: 1+1=?", 2, SamplingParams(seed=5))
    samples = with_retries(lambda: engine.generate([request]), attempts=3, backoff_s=0, what="stub generate")
    assert [s.seed for s in samples[0]] == [5, 6] and state.calls == 3  # two failures, one success: 3 calls
    state.calls, state.failures = 0, 10
    with pytest.raises(EngineError, match="after 3 attempts"):
        with_retries(lambda: engine.generate([request]), attempts=3, backoff_s=0, what="stub generate")
    assert state.calls == 3  # attempts x 1 call, not attempts x (1 + client retries)
    engine.close()
