"""The coroutine driver: requests of many searches merged into calls, failures isolated per search."""

import pytest

from engines.driver import run_searches
from schemas.records import Request, Sample, SamplingParams


class CountingEngine:
    """A test double that answers each request with `n` numbered samples and records every call."""

    name = "counting"
    model = "none"

    def __init__(self, fail_prompts=(), fail_times=0):
        self.calls: list[list[Request]] = []
        self.fail_prompts = set(fail_prompts)
        self.fail_times = fail_times

    def generate(self, requests):
        self.calls.append(list(requests))
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("transient")
        if any(r.prompt in self.fail_prompts for r in requests):
            raise RuntimeError("poisoned prompt")
        return [[Sample(f"{r.prompt}#{i}", "stop", 3) for i in range(r.n)] for r in requests]

    def close(self):
        pass


def two_round_search(name: str, rounds: int = 2):
    seen = []
    for round_index in range(rounds):
        answers = yield [
            Request(f"{name}/r{round_index}/a", 2, SamplingParams()),
            Request(f"{name}/r{round_index}/b", 1, SamplingParams()),
        ]
        seen.append([[s.text for s in samples] for samples in answers])
    return seen


def test_rounds_are_merged_across_searches_and_answers_routed():
    engine = CountingEngine()
    outcomes, stats = run_searches([two_round_search("x"), two_round_search("y"), two_round_search("z", 1)], engine)
    # One engine call per round for all searches together.
    assert len(engine.calls) == 2
    assert [r.prompt for r in engine.calls[0]] == ["x/r0/a", "x/r0/b", "y/r0/a", "y/r0/b", "z/r0/a", "z/r0/b"]
    assert outcomes[0].result == [[["x/r0/a#0", "x/r0/a#1"], ["x/r0/b#0"]], [["x/r1/a#0", "x/r1/a#1"], ["x/r1/b#0"]]]
    assert outcomes[2].result == [[["z/r0/a#0", "z/r0/a#1"], ["z/r0/b#0"]]]
    assert stats.calls == 2 and stats.sequences == 9 + 6 and stats.generated_tokens == 3 * 15
    assert stats.call_sequences == [9, 6]


def test_calls_respect_the_sequence_limit():
    engine = CountingEngine()
    run_searches([two_round_search(str(i), 1) for i in range(5)], engine, max_sequences_per_call=6)
    assert [sum(r.n for r in call) for call in engine.calls] == [6, 6, 3]


def test_transient_failures_are_retried():
    engine = CountingEngine(fail_times=2)
    sleeps = []
    outcomes, _ = run_searches([two_round_search("x", 1)], engine, attempts=3, backoff_s=0.5, sleep=sleeps.append)
    assert outcomes[0].error is None and outcomes[0].result
    assert sleeps == [0.5, 1.0]


def test_a_failing_request_fails_only_its_search():
    engine = CountingEngine(fail_prompts={"bad/r0/a"})
    outcomes, _ = run_searches(
        [two_round_search("good"), two_round_search("bad"), two_round_search("fine")],
        engine,
        attempts=2,
        sleep=lambda s: None,
    )
    assert outcomes[1].error is not None and "poisoned prompt" in outcomes[1].error
    assert outcomes[0].error is None and len(outcomes[0].result) == 2
    assert outcomes[2].error is None and len(outcomes[2].result) == 2


def test_a_crashing_search_is_reported_and_others_finish():
    def broken():
        yield [Request("p", 1, SamplingParams())]
        raise ValueError("bad evidence")

    outcomes, _ = run_searches([broken(), two_round_search("ok")], CountingEngine())
    assert outcomes[0].error == "search failed: ValueError: bad evidence"
    assert outcomes[1].error is None


def test_empty_rounds_and_immediate_returns():
    def nothing():
        got = yield []
        assert got == []
        return "done"

    def immediate():
        return "now"
        yield  # pragma: no cover

    engine = CountingEngine()
    outcomes, stats = run_searches([nothing(), immediate()], engine)
    assert [o.result for o in outcomes] == ["done", "now"]
    assert engine.calls == [] and stats.calls == 0


def test_sequences_in_flight_starts_searches_as_others_end():
    # Each search asks 3 sequences a round; "long" runs 4 rounds, the others 1 or 2.
    engine = CountingEngine()
    searches = [two_round_search("long", 4), two_round_search("a", 1), two_round_search("b", 2)]
    searches += [two_round_search(name, 1) for name in ("c", "d")]
    outcomes, stats = run_searches(searches, engine, sequences_in_flight=6)
    started = [sorted({r.prompt.split("/")[0] for r in call}) for call in engine.calls]
    # Two searches (6 sequences) at first; each round tops the live ones up to 6 sequences, in the order given.
    assert started == [["a", "long"], ["b", "long"], ["b", "long"], ["c", "long"], ["d"]]
    assert stats.call_sequences == [6, 6, 6, 6, 3]
    assert [len(o.result) for o in outcomes] == [4, 1, 2, 1, 1]


def test_sequences_in_flight_changes_only_the_calls_not_the_answers():
    def searches():
        return [two_round_search(str(i), 1 + i % 3) for i in range(7)]

    at_once, _ = run_searches(searches(), CountingEngine())
    limited, stats = run_searches(searches(), CountingEngine(), sequences_in_flight=4)
    assert [o.result for o in limited] == [o.result for o in at_once]
    assert all(o.error is None for o in limited) and stats.sequences == 3 * sum(1 + i % 3 for i in range(7))


def test_sequences_in_flight_must_be_positive():
    with pytest.raises(ValueError, match="sequences_in_flight"):
        run_searches([two_round_search("x")], CountingEngine(), sequences_in_flight=0)


def test_on_done_reports_each_search_once_as_it_ends():
    def broken():
        yield [Request("p", 1, SamplingParams())]
        raise ValueError("bad evidence")

    ended = []
    engine = CountingEngine(fail_prompts={"bad/r0/a"})
    searches = [two_round_search("x", 3), broken(), two_round_search("bad"), two_round_search("y", 1)]
    run_searches(searches, engine, attempts=1, sleep=lambda s: None, on_done=ended.append)
    # y and the broken search end after round one, the failed request's search with its call, x last.
    assert sorted(ended) == [0, 1, 2, 3] and ended[-1] == 0
    assert set(ended[:3]) == {1, 2, 3}
