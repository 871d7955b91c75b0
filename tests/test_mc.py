"""Math-Shepherd per-step MC: the search coroutine and the labelling annotator, against a scripted policy."""

from annotators.mc import LabelRule, McSearchConfig, label_paths, math_shepherd_search
from engines.driver import run_searches
from schemas.records import Problem, Sample

PROMPT = "Q: 2+3*4-5=?"
RIGHT = " Step 1: 3*4=12 Step 2: 2+12=14 Step 3: 14-5=9 Answer: 9"
WRONG_AT_1 = " Step 1: 3*4=12 Step 2: 2+12=15 Step 3: 15-5=10 Answer: 10"
WRONG_AT_0 = " Step 1: 3*4=11 Step 2: 2+11=13 Step 3: 13-5=8 Answer: 8"


class ScriptedPolicy:
    """A test double: solutions are scripted; a completion succeeds iff its prefix is still on the right path,
    except that a correct prefix fails on every other sample (so MC values are fractional)."""

    name = "scripted"
    model = "scripted"

    def __init__(self, solutions):
        self.solutions = solutions
        self.requests = []

    def generate(self, requests):
        self.requests.extend(requests)
        out = []
        for r in requests:
            if r.prompt == PROMPT:
                out.append(
                    [
                        Sample(self.solutions[i % len(self.solutions)], "stop", 20, seed=r.sampling.seed + i)
                        for i in range(r.n)
                    ]
                )
                continue
            prefix = r.prompt[len(PROMPT) :]
            on_path = RIGHT.startswith(prefix)
            samples = []
            for i in range(r.n):
                good = on_path and i % 2 == 0
                samples.append(Sample(" Answer: 9" if good else " Answer: 7", "stop", 4, seed=r.sampling.seed + i))
            out.append(samples)
        return out

    def close(self):
        pass


def run(solutions, **kw):
    problem = Problem("p1", PROMPT, "9", "arithmetic", "test")
    config = McSearchConfig(num_solutions=len(solutions), completions_per_step=4, splitter="step_markers", **kw)
    engine = ScriptedPolicy(solutions)
    outcomes, stats = run_searches([math_shepherd_search(problem, PROMPT, config, run_seed=5)], engine)
    assert outcomes[0].error is None
    return outcomes[0].result, engine, stats


def test_mc_values_labels_and_first_error():
    evidence, engine, _ = run([RIGHT, WRONG_AT_1, WRONG_AT_0])
    rows = {r["meta"]["solution_index"]: r for r in label_paths(evidence, LabelRule())}
    assert rows[0]["mc_values"] == [0.5, 0.5, 1.0] and rows[0]["labels"] == [True, True, True]
    assert rows[0]["first_error_index"] == -1
    assert rows[1]["mc_values"] == [0.5, 0.0, 0.0] and rows[1]["first_error_index"] == 1
    assert rows[2]["mc_values"] == [0.0, 0.0, 0.0] and rows[2]["first_error_index"] == 0
    assert rows[1]["n_correct"] == [2, 0, 0] and rows[1]["n_rollouts"] == [4, 4, 1]
    assert rows[0]["completions"] == ["Step 1: 3*4=12", "Step 2: 2+12=14", "Step 3: 14-5=9 Answer: 9"]
    assert rows[1]["outcome_correct"] is False and rows[1]["final_answer"] == "10"


def test_cost_is_k_times_steps_minus_one_and_identical_prefixes_are_estimated_once():
    evidence, engine, stats = run([RIGHT, WRONG_AT_1, WRONG_AT_0])
    # Completions: 3 solutions x 2 prefixes x k=4, but RIGHT and WRONG_AT_1 share the step-1 prefix.
    assert len(evidence.completions) == 3 * 2 * 4
    prefix_requests = [r for r in engine.requests if r.prompt != PROMPT]
    assert len(prefix_requests) == 5
    assert all(r.n == 4 for r in prefix_requests)
    assert stats.calls == 2  # solutions, then every prefix in one call


def test_every_request_has_its_own_seed():
    _, engine, _ = run([RIGHT, WRONG_AT_1, WRONG_AT_0])
    seeds = [r.sampling.seed for r in engine.requests]
    assert len(set(seeds)) == len(seeds)


def test_threshold_rule():
    evidence, _, _ = run([RIGHT])
    (row,) = label_paths(evidence, LabelRule("threshold", 0.5))
    assert row["labels"] == [False, False, True] and row["label_policy"] == "mc>0.5"


def test_prefilter_skips_uniform_problems_without_completions():
    evidence, engine, _ = run([RIGHT, RIGHT], prefilter=True)
    assert evidence.status == "prefiltered_all_correct" and evidence.completions == []
    assert label_paths(evidence, LabelRule()) == []
    assert len(engine.requests) == 1
    evidence, _, _ = run([WRONG_AT_0, WRONG_AT_1], prefilter=True)
    assert evidence.status == "prefiltered_all_wrong"
    evidence, _, _ = run([RIGHT, WRONG_AT_1], prefilter=True)
    assert evidence.status == "ok" and len(label_paths(evidence, LabelRule())) == 2


def test_empty_solutions_give_no_steps_status():
    evidence, _, _ = run(["", "   "])
    assert evidence.status == "no_steps"
    assert label_paths(evidence, LabelRule()) == []


def test_truncated_solution_counts_as_wrong():
    class Truncating(ScriptedPolicy):
        def generate(self, requests):
            out = super().generate(requests)
            return [[Sample(s.text, "length", s.n_tokens, seed=s.seed) for s in samples] for samples in out]

    problem = Problem("p1", PROMPT, "9")
    config = McSearchConfig(num_solutions=1, completions_per_step=2, splitter="step_markers")
    outcomes, _ = run_searches([math_shepherd_search(problem, PROMPT, config, 0)], Truncating([RIGHT]))
    evidence = outcomes[0].result
    assert evidence.solutions[0].outcome_correct is False
    assert evidence.solutions[0].verdict_reason == "truncated"
