"""Live progress of a local run: one line per stage with counts, rate and ETA.

Process-local on purpose: on FnApiRunner's default in-memory mode the DoFns run in the launching process, so the
bars show what the run is doing; on Dataflow (or in worker processes) the same events are Beam metrics, which the
Dataflow UI shows. On a terminal the bars redraw in place; otherwise a line is logged every few seconds.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

log = logging.getLogger("stepforge.progress")

_WIDTH = 24


class Progress:
    def __init__(self, stream=None, interval_s: float = 5.0):
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.stages: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.last_log = 0.0
        self.enabled = True

    def update(self, stage: str, done: int = 1, total: int | None = None, unit: str = "") -> None:
        if not self.enabled:
            return
        with self.lock:
            now = time.monotonic()
            state = self.stages.setdefault(stage, {"done": 0, "total": None, "start": now, "unit": unit})
            state["done"] += done
            if total is not None:
                state["total"] = total
            self._show(stage, now)

    def line(self, stage: str, now: float | None = None) -> str:
        state = self.stages[stage]
        now = time.monotonic() if now is None else now
        elapsed = max(now - state["start"], 1e-9)
        rate = state["done"] / elapsed
        total = state["total"]
        if total:
            filled = min(_WIDTH, int(_WIDTH * state["done"] / total))
            bar = "#" * filled + "-" * (_WIDTH - filled)
            eta = (total - state["done"]) / rate if rate > 0 else float("inf")
            eta_text = f"ETA {eta:.0f}s" if eta != float("inf") else "ETA ?"
            return f"{stage:<12} [{bar}] {state['done']}/{total} {state['unit']} {rate:.1f}/s {eta_text}"
        return f"{stage:<12} {state['done']} {state['unit']} {rate:.1f}/s {elapsed:.0f}s"

    def _show(self, stage: str, now: float) -> None:
        text = self.line(stage, now)
        if getattr(self.stream, "isatty", lambda: False)():
            self.stream.write("\r\033[K" + text + ("\n" if self._finished(stage) else ""))
            self.stream.flush()
        elif now - self.last_log >= self.interval_s or self._finished(stage):
            self.last_log = now
            log.info("%s", text)

    def _finished(self, stage: str) -> bool:
        state = self.stages[stage]
        return state["total"] is not None and state["done"] >= state["total"]


PROGRESS = Progress()
