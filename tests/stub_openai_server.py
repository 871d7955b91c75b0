"""A stand-in for `vllm serve` in tests: `/health` and `/v1/completions` on 127.0.0.1:PORT, answers made from the
request (each choice's text names its seed, `seed + i`, as vLLM samples choice i); a prompt holding FAIL gets 400. Usage: PORT [STARTS_FILE]; each
start appends a line to STARTS_FILE, so a test can count how many servers were started."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._reply(200, {} if self.path == "/health" else {"error": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if "FAIL" in body["prompt"]:
            self._reply(400, {"error": {"message": "refused", "type": "BadRequestError", "code": 400}})
            return
        n, seed = int(body.get("n", 1)), int(body.get("seed") or 0)
        choices = []
        for i in range(n):
            text = f" seed={seed + i} prompt={body['prompt']}"
            choices.append({"index": i, "text": text, "finish_reason": "stop", "token_ids": list(range(len(text)))})
        usage = {"prompt_tokens": 3, "completion_tokens": sum(len(c["text"]) for c in choices), "total_tokens": 0}
        self._reply(200, {"id": "stub", "object": "text_completion", "created": 0, "model": body["model"],
                          "choices": choices, "usage": usage})  # fmt: skip

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    if len(sys.argv) > 2:
        with open(sys.argv[2], "a") as starts:
            starts.write("started\n")
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
