"""The generation cache: per-sample content keys, only missing samples generated, persisted as they come."""

from dataclasses import replace

from engines.cache import CachedEngine, sample_key
from schemas.records import Request, Sample, SamplingParams


class SeedEcho:
    """A test double whose sample i of (prompt, n, seed) is a pure function of (prompt, seed + i), like vLLM."""

    name = "echo"
    model = "echo"

    def __init__(self):
        self.requests = []

    def generate(self, requests):
        self.requests.extend(requests)
        return [
            [Sample(f"{r.prompt}@{r.sampling.seed + i}", "stop", 2, seed=r.sampling.seed + i) for i in range(r.n)]
            for r in requests
        ]

    def close(self):
        pass


def req(prompt, n, seed, key="x"):
    return Request(prompt, n, SamplingParams(seed=seed, max_tokens=8), key, problem_id="p1")


def make(entries=None):
    inner = SeedEcho()
    cached = CachedEngine(lambda: inner, "fp", entries or {})
    return inner, cached


def test_second_pass_is_all_hits_and_never_builds_the_engine():
    inner, first = make()
    out1 = first.generate([req("a", 3, 100), req("b", 2, 7)])
    assert first.misses == 5 and first.hits == 0 and len(first.new_entries) == 5
    built = []
    second = CachedEngine(lambda: built.append(1) or inner, "fp", {e.key: e for e in first.new_entries})
    out2 = second.generate([req("a", 3, 100), req("b", 2, 7)])
    assert [[s.text for s in x] for x in out2] == [[s.text for s in x] for x in out1]
    assert second.hits == 5 and second.misses == 0 and built == []


def test_a_larger_budget_generates_only_the_new_samples():
    inner, first = make()
    first.generate([req("a", 4, 100)])
    inner2, second = make({e.key: e for e in first.new_entries})
    out = second.generate([req("a", 8, 100)])
    assert [s.text for s in out[0]] == [f"a@{100 + i}" for i in range(8)]
    assert [(r.n, r.sampling.seed) for r in inner2.requests] == [(4, 104)]
    assert second.hits == 4 and second.misses == 4


def test_gaps_become_separate_runs_and_new_samples_are_persisted_per_call():
    inner, first = make()
    first.generate([req("a", 1, 10), req("a", 1, 12)])
    persisted = []
    inner2, second = make({e.key: e for e in first.new_entries})
    second.on_new = persisted.append
    second.generate([req("a", 4, 10)])
    assert [(r.n, r.sampling.seed) for r in inner2.requests] == [(1, 11), (1, 13)]
    assert [len(batch) for batch in persisted] == [2]
    assert {e.seed for e in persisted[0]} == {11, 13} and all(e.problem_id == "p1" for e in persisted[0])


def test_keys_depend_on_what_changes_the_sample_and_not_on_n():
    base = req("a", 1, 5)
    k = sample_key("fp", base, 5)
    assert sample_key("fp", replace(base, n=8), 5) == k
    assert sample_key("fp", replace(base, key="other"), 5) == k
    assert sample_key("fp", base, 6) != k
    assert sample_key("fp2", base, 5) != k
    assert sample_key("fp", replace(base, prompt="b"), 5) != k
    assert sample_key("fp", replace(base, sampling=replace(base.sampling, temperature=0.5)), 5) != k


def drain(stream, requests):
    for tag, request in enumerate(requests):
        stream.submit(tag, request)
    out = {}
    while len(out) < len(requests):
        out.update(stream.step())
    return [out[i] for i in range(len(requests))]


def test_stream_answers_like_generate_and_sends_only_the_missing_samples():
    inner, first = make()
    first.generate([req("a", 2, 100)])
    persisted = []
    inner2, second = make({e.key: e for e in first.new_entries})
    second.on_new = persisted.append
    with second.stream() as stream:
        out = drain(stream, [req("a", 4, 100), req("b", 1, 5), req("a", 2, 100)])
    assert [[s.text for s in x] for x in out] == [["a@100", "a@101", "a@102", "a@103"], ["b@5"], ["a@100", "a@101"]]
    # The engine has no stream of its own: its `generate` answers the misses, once each, as one request per run.
    assert [(r.prompt, r.n, r.sampling.seed) for r in inner2.requests] == [("a", 2, 102), ("b", 1, 5)]
    assert second.hits == 4 and second.misses == 3
    assert [sorted(e.seed for e in batch) for batch in persisted] == [[5, 102, 103]]  # persisted when it ends


def test_a_fully_cached_stream_never_builds_the_engine():
    inner, first = make()
    first.generate([req("a", 3, 100)])
    built = []
    cached = CachedEngine(lambda: built.append(1) or inner, "fp", {e.key: e for e in first.new_entries})
    with cached.stream() as stream:
        out = drain(stream, [req("a", 3, 100)])
        assert stream.in_flight() == 0
    assert [s.text for s in out[0]] == ["a@100", "a@101", "a@102"] and built == []


def test_a_long_stream_persists_its_new_samples_as_it_goes(monkeypatch):
    from engines import cache

    monkeypatch.setattr(cache._CachedStream, "flush_samples", 3)
    persisted = []
    _, cached = make()
    cached.on_new = persisted.append
    with cached.stream() as stream:
        drain(stream, [req("a", 2, 1), req("b", 2, 1)])
        assert [len(batch) for batch in persisted] == [4]  # flushed once 3 or more had come, before the end
        drain(stream, [req("c", 1, 1)])
    assert [len(batch) for batch in persisted] == [4, 1] and len(cached.new_entries) == 5
