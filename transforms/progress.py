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
# A rate over less time than this says more about the clock than about the work (the first event: 4e9/s).
MIN_RATE_SECONDS = 1.0


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
            # The clock starts at the first event, so its items were done before it: the rate counts the rest.
            state = self.stages.setdefault(stage, {"done": 0, "total": None, "start": now, "unit": unit, "first": done})
            state["done"] += done
            if total is not None:
                state["total"] = total
            self._show(stage, now)

    def rate(self, stage: str, now: float | None = None) -> float | None:
        """Items per second since the stage's first event, or None before `MIN_RATE_SECONDS` have passed."""
        state = self.stages[stage]
        now = time.monotonic() if now is None else now
        elapsed = now - state["start"]
        if elapsed < MIN_RATE_SECONDS:
            return None
        return (state["done"] - state.get("first", 0)) / elapsed

    def line(self, stage: str, now: float | None = None) -> str:
        state = self.stages[stage]
        now = time.monotonic() if now is None else now
        elapsed = max(now - state["start"], 0.0)
        rate = self.rate(stage, now)
        rate_text = "?/s" if rate is None else f"{rate:.1f}/s"
        total = state["total"]
        if total:
            filled = min(_WIDTH, int(_WIDTH * state["done"] / total))
            bar = "#" * filled + "-" * (_WIDTH - filled)
            if state["done"] >= total:
                eta_text = f"done in {elapsed:.0f}s"
            else:
                eta_text = f"ETA {(total - state['done']) / rate:.0f}s" if rate else f"ETA ? ({elapsed:.0f}s)"
            return f"{stage:<12} [{bar}] {state['done']}/{total} {state['unit']} {rate_text} {eta_text}"
        return f"{stage:<12} {state['done']} {state['unit']} {rate_text} {elapsed:.0f}s"

    def _show(self, stage: str, now: float) -> None:
        text = self.line(stage, now)
        if getattr(self.stream, "isatty", lambda: False)():
            self.stream.write("\r\033[K" + text + ("\n" if self._finished(stage) else ""))
            self.stream.flush()
        elif now - self.last_log >= self.interval_s or self._finished(stage):
            self.last_log = now
            log.info("%s", text)

    def flush(self, stage: str) -> None:
        """Show the stage's line now (a logged line otherwise waits for the interval): its count at a batch's end."""
        if not self.enabled:
            return
        with self.lock:
            if stage in self.stages:
                now = time.monotonic()
                if getattr(self.stream, "isatty", lambda: False)():
                    self.stream.write("\r\033[K" + self.line(stage, now) + "\n")
                    self.stream.flush()
                else:
                    self.last_log = now
                    log.info("%s", self.line(stage, now))

    def _finished(self, stage: str) -> bool:
        state = self.stages[stage]
        return state["total"] is not None and state["done"] >= state["total"]


PROGRESS = Progress()
