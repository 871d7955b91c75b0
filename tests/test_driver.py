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


# --- request level ---------------------------------------------------------------------------------------------


class SteppedStream:
    """A `RequestStream` double: a request whose prompt ends in "~k" takes k steps, others one; records every
    submission with the step it came in."""

    def __init__(self, fail_at_step=None):
        self.now = 0
        self.running = []  # [steps left, tag, request]
        self.submitted = []  # (step, prompt)
        self.fail_at_step = fail_at_step
        self.aborted = 0

    def submit(self, tag, request):
        steps = int(request.prompt.rsplit("~", 1)[1]) if "~" in request.prompt else 1
        self.running.append([steps, tag, request])
        self.submitted.append((self.now, request.prompt))

    def step(self):
        self.now += 1
        if self.now == self.fail_at_step:
            raise RuntimeError("device lost")
        for item in self.running:
            item[0] -= 1
        done = [
            (tag, [Sample(f"{r.prompt}#{i}", "stop", 3) for i in range(r.n)])
            for left, tag, r in self.running
            if left == 0
        ]
        self.running = [item for item in self.running if item[0] > 0]
        return done

    def in_flight(self):
        return sum(r.n for _, _, r in self.running)

    def abort(self):
        self.aborted += 1
        self.running = []


class StreamingEngine(CountingEngine):
    """CountingEngine (for retries with `generate`) that also opens a `SteppedStream`."""

    def __init__(self, fail_at_step=None, **kwargs):
        super().__init__(**kwargs)
        self.opened = SteppedStream(fail_at_step)

    def stream(self):
        import contextlib

        return contextlib.nullcontext(self.opened)


def chain(name: str, rounds: int, steps: int = 1):
    """One request a round, each taking `steps` engine steps."""
    got = []
    for i in range(rounds):
        answer = yield [Request(f"{name}/r{i}~{steps}", 1, SamplingParams())]
        got.append(answer[0][0].text)
    return got


def test_request_level_moves_a_search_on_without_waiting_for_the_others():
    engine = StreamingEngine()
    outcomes, stats = run_searches([chain("slow", 1, steps=5), chain("fast", 3)], engine, request_level=True)
    # fast's rounds 2 and 3 join while slow's 5-step request still runs: no round waits for the longest request.
    assert engine.opened.submitted == [(0, "slow/r0~5"), (0, "fast/r0~1"), (1, "fast/r1~1"), (2, "fast/r2~1")]
    assert outcomes[1].result == ["fast/r0~1#0", "fast/r1~1#0", "fast/r2~1#0"]
    assert outcomes[0].result == ["slow/r0~5#0"]
    assert stats.unit == "step" and stats.calls == 5 and stats.call_sequences == [2, 2, 2, 1, 1]
    assert stats.requests == 4 and stats.sequences == 4 and engine.calls == []  # generate is never used


def test_request_level_gives_the_rounds_driver_answers():
    def searches():
        return [two_round_search(str(i), 1 + i % 3) for i in range(7)] + [chain("c", 4, steps=2)]

    rounds, _ = run_searches(searches(), CountingEngine())
    streamed, _ = run_searches(searches(), StreamingEngine(), request_level=True)
    batched, stats = run_searches(searches(), CountingEngine(), request_level=True, max_sequences_per_call=5)
    assert [o.result for o in streamed] == [o.result for o in rounds] == [o.result for o in batched]
    assert all(o.error is None for o in streamed + batched)
    # Without a stream of its own, each step is one `generate` of the queued requests (whole, at most 5 sequences).
    assert stats.unit == "step" and stats.sequences == 3 * sum(1 + i % 3 for i in range(7)) + 4


def test_request_level_starts_searches_as_sequences_leave_the_engine():
    engine = StreamingEngine()
    searches = [chain(name, 1, steps=2) for name in ("a", "b", "c", "d")]
    outcomes, _ = run_searches(searches, engine, request_level=True, sequences_in_flight=2)
    assert [step for step, _ in engine.opened.submitted] == [0, 0, 2, 2]
    assert all(o.error is None for o in outcomes)


def test_a_failed_step_retries_each_waiting_search_alone():
    engine = StreamingEngine(fail_at_step=2, fail_prompts={"bad/r0~3"})
    ended = []
    searches = [chain("ok", 2, steps=3), chain("bad", 1, steps=3), chain("fine", 3)]
    outcomes, _ = run_searches(
        searches, engine, request_level=True, attempts=2, sleep=lambda s: None, on_done=ended.append
    )
    assert engine.opened.aborted == 1
    # The step failed with a round of each in flight: each went to `generate` alone (bad's twice: 2 attempts), and
    # bad's poisoned prompt fails only bad; the others go on in the stream.
    calls = [[r.prompt for r in call] for call in engine.calls]
    assert calls == [["ok/r0~3"], ["bad/r0~3"], ["bad/r0~3"], ["fine/r1~1"]]
    assert [prompt for _, prompt in engine.opened.submitted][-2:] == ["ok/r1~3", "fine/r2~1"]
    assert outcomes[1].error is not None and "poisoned prompt" in outcomes[1].error
    assert outcomes[0].result == ["ok/r0~3#0", "ok/r1~3#0"]
    assert outcomes[2].result == ["fine/r0~1#0", "fine/r1~1#0", "fine/r2~1#0"]
    assert sorted(ended) == [0, 1, 2]


def test_request_level_empty_rounds_crashes_and_refused_requests():
    class Refusing(StreamingEngine):
        def stream(self):
            import contextlib

            stream = self.opened
            submit = stream.submit

            def refuse(tag, request):
                if request.prompt.startswith("refused"):
                    raise ValueError("prompt too long")
                submit(tag, request)

            stream.submit = refuse
            return contextlib.nullcontext(stream)

    def nothing():
        got = yield []
        assert got == []
        return "done"

    def broken():
        yield [Request("p", 1, SamplingParams())]
        raise ValueError("bad evidence")

    engine = Refusing()
    outcomes, _ = run_searches([nothing(), broken(), chain("refused", 1), chain("ok", 2)], engine, request_level=True)
    assert outcomes[0].result == "done"
    assert outcomes[1].error == "search failed: ValueError: bad evidence"
    assert outcomes[2].error == "engine refused a request: ValueError: prompt too long"
    assert outcomes[3].result == ["ok/r0~1#0", "ok/r1~1#0"]


def test_an_engine_behind_a_proxy_is_driven_through_generate():
    class Proxy:  # forwards every name, like Beam's MultiProcessShared proxy; a stream cannot cross processes
        def __init__(self, target):
            self._target = target

        def __getattr__(self, name):
            return getattr(self._target, name)

    engine = StreamingEngine()
    outcomes, stats = run_searches([chain("a", 2), chain("b", 1)], Proxy(engine), request_level=True)
    assert [o.result for o in outcomes] == [["a/r0~1#0", "a/r1~1#0"], ["b/r0~1#0"]]
    assert engine.opened.submitted == [] and [len(call) for call in engine.calls] == [2, 1]
    assert stats.unit == "step" and stats.call_sequences == [2, 1]
