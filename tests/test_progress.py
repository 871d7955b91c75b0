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
