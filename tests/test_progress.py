"""Live progress lines: counts, rate and ETA per stage; redrawn on a terminal, logged otherwise."""

import io
import logging

from transforms.progress import Progress


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_bar_with_total_shows_count_rate_and_eta():
    progress = Progress(stream=Tty())
    progress.update("search", 5, total=20, unit="problems")
    line = progress.line("search")
    assert line.startswith("search       [######------------------] 5/20 problems")
    assert "/s ETA" in line
    progress.update("search", 15)
    assert progress.line("search").startswith("search       [########################] 20/20")
    out = progress.stream.getvalue()
    assert out.count("\r") == 2 and out.endswith("\n")


def test_open_ended_stage_and_logging_when_not_a_terminal(caplog):
    progress = Progress(stream=io.StringIO(), interval_s=0)
    with caplog.at_level(logging.INFO, logger="stepforge.progress"):
        progress.update("completions", 64, unit="samples")
        progress.update("completions", 64)
    assert progress.line("completions").startswith("completions  128 samples")
    assert len(caplog.records) == 2 and progress.stream.getvalue() == ""


def test_the_first_line_shows_no_rate_and_later_ones_count_from_the_first_event(monkeypatch):
    import transforms.progress as progress_module

    clock = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    progress = Progress(stream=io.StringIO(), interval_s=0)
    progress.update("completions", 4, unit="samples")  # done before the clock started: no rate over ~0 s
    assert progress.line("completions") == "completions  4 samples ?/s 0s"
    progress.update("search", 5, total=20, unit="problems")
    assert progress.line("search").endswith("5/20 problems ?/s ETA ? (0s)")
    clock[0] += 2.0
    progress.update("completions", 6)
    assert progress.line("completions") == "completions  10 samples 3.0/s 2s"  # the 6 done since the first event
    progress.update("search", 5)
    assert progress.line("search").endswith("10/20 problems 2.5/s ETA 4s")
    clock[0] += 4.0
    progress.update("search", 10)
    assert progress.line("search").endswith("20/20 problems 2.5/s done in 6s")  # a finished bar has no ETA


def test_a_stage_started_at_zero_and_flushed_at_a_batch_end(monkeypatch, caplog):
    import transforms.progress as progress_module

    clock = [1000.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    progress = Progress(stream=io.StringIO(), interval_s=60)
    with caplog.at_level(logging.INFO, logger="stepforge.progress"):
        progress.update("search", 0, total=4, unit="problems")  # registered at the start: the clock runs from here
        clock[0] = 1010.0
        progress.update("completions", 32, unit="samples")
        progress.update("completions", 6)  # within the interval: not logged
        progress.flush("completions")  # the batch ended: its count is logged now
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].endswith("0/4 problems ?/s ETA ? (0s)")
    assert lines[-1].startswith("completions  38 samples")
