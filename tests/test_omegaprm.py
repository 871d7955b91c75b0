"""OmegaPRM search against a scripted policy (pure Python, deterministic, no model).

The scripted policy knows, per problem, the gold solution and solutions with a planted first error at step e (the
result of step e is off by one, and so is the final answer). Asked to continue a prefix, it picks one of the full
solutions that start with that prefix and returns the rest: a correct one with probability p(prefix) when the
prefix is still on the gold solution, a wrong one otherwise. A prefix that went off the gold solution therefore
never succeeds; one still on it succeeds with p > 0, so the true first error of every rollout is known exactly.
Answers are graded by the real `annotators.answers.judge_text` and steps cut by the real `split_steps`.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable

import pyarrow as pa
import pytest

from annotators.answers import TruncatedGenerationError, Verdict
from annotators.omegaprm import (
    NODES_SCHEMA,
    OmegaPRMConfig,
    OmegaPRMResult,
    nodes_to_rows,
    omegaprm_search,
)
from annotators.steps import split_steps
from domains.arithmetic import canonical_steps, evaluate, exact_first_error, format_step, gold_solution, question_for
from engines.driver import run_searches
from schemas.records import Problem, Request, Sample, SamplingParams
from schemas.tables import PATHS

EXPRESSION = "9*9+24-7"
PROMPT = question_for(EXPRESSION)  # "Q: 9*9+24-7=?"
_TOKEN = re.compile(r"\s*(?:\d|[A-Za-z]+|\S)")


def token_offsets(text: str) -> list[int]:
    """A toy tokenizer: one token per digit, word or symbol, leading spaces attached."""
    return [m.end() for m in _TOKEN.finditer(text)]


def planted(expression: str, error_step: int, verbose: bool = False) -> str:
    """A solution whose first error is step `error_step` (1-based): its result and the final answer are off by one."""
    steps = canonical_steps(expression)
    parts = []
    for index, (a, op, b, c) in enumerate(steps, start=1):
        text = " " + format_step(index, (a, op, b, c + 1 if index == error_step else c))
        if verbose and index == error_step:
            text += " Hmm so that is the value we need here."
        parts.append(text)
    return "".join(parts) + f" Answer: {evaluate(expression) + 1}"


def problem_for(expression: str, pid: str = "p0") -> Problem:
    return Problem(problem_id=pid, question=question_for(expression), answer=str(evaluate(expression)))


class ScriptedPolicy:
    """A fake engine (name, model, generate) that continues prefixes with known success probabilities."""

    name = "scripted"
    model = "scripted-arith"

    def __init__(
        self,
        expressions: list[str],
        p_correct: Callable[[str], float] = lambda prefix: 0.5,
        quota: bool = True,
        verbose_wrong: bool = False,
        truncate_every: int = 0,
    ) -> None:
        self.solutions: dict[str, tuple[str, list[str]]] = {}
        for expression in expressions:
            n = len(canonical_steps(expression))
            wrong = [planted(expression, e) for e in range(1, n + 1)]
            if verbose_wrong:
                wrong += [planted(expression, e, verbose=True) for e in range(1, n + 1)]
            self.solutions[question_for(expression)] = (gold_solution(expression), wrong)
        self.p_correct = p_correct
        self.quota = quota  # exactly round(p·n) correct samples per request, so MC = p exactly
        self.truncate_every = truncate_every
        self.requests: list[Request] = []
        self.samples = 0

    def split_prompt(self, prompt: str) -> tuple[str, str]:
        for question in self.solutions:
            if prompt.startswith(question):
                return question, prompt[len(question) :]
        raise AssertionError(f"unknown prompt {prompt!r}")

    def on_gold(self, prompt: str) -> bool:
        question, prefix = self.split_prompt(prompt)
        return self.solutions[question][0].startswith(prefix)

    def generate(self, requests: list[Request]) -> list[list[Sample]]:
        out = []
        for request in requests:
            self.requests.append(request)
            question, prefix = self.split_prompt(request.prompt)
            gold, wrong = self.solutions[question]
            consistent = [w for w in wrong if w.startswith(prefix)]
            p = self.p_correct(prefix) if gold.startswith(prefix) else 0.0
            if not consistent:
                p = 1.0
            assert gold.startswith(prefix) or consistent, f"prefix {prefix!r} is on no known solution"
            samples = []
            for i in range(request.n):
                rng = random.Random(f"{request.sampling.seed}/{i}")
                good = i < round(p * request.n) if self.quota else rng.random() < p
                full = gold if good else consistent[rng.randrange(len(consistent))]
                text = full[len(prefix) :]
                finish = "stop"
                if self.truncate_every and i % self.truncate_every == self.truncate_every - 1:
                    text, finish = text[:-1], "length"  # cut inside the final answer: "Answer: 9" of 98
                samples.append(Sample(text, finish, len(token_offsets(text)), seed=request.sampling.seed + i))
            self.samples += request.n
            out.append(samples)
        return out

    def close(self) -> None:
        pass


def drive(search, policy: ScriptedPolicy) -> OmegaPRMResult:
    """Run one search coroutine to the end; every round must be one step of the search (one request)."""
    requests = next(search)
    try:
        while True:
            assert len(requests) == 1
            requests = search.send(policy.generate(requests))
    except StopIteration as stop:
        return stop.value


def run(config: OmegaPRMConfig, policy: ScriptedPolicy, expression: str = EXPRESSION, **kwargs) -> OmegaPRMResult:
    problem = problem_for(expression)
    return drive(omegaprm_search(problem, problem.question, config, run_seed=7, **kwargs), policy)


def true_first_error(result: OmegaPRMResult, selection: dict, expression: str = EXPRESSION) -> tuple[list[str], int]:
    node = result.nodes[selection["node_id"]]
    full = node["prefix"] + node["rollouts"][selection["rollout_index"]]["text"]
    steps, _ = split_steps(full)
    return steps, exact_first_error(expression, steps)


# --------------------------------------------------------------------------------------------------------------


def test_config_validation_names_the_field() -> None:
    for kwargs, field_name in [
        ({"k": 0}, "k"),
        ({"alpha": 0}, "alpha"),
        ({"beta": 1.5}, "beta"),
        ({"length_scale": 0}, "length_scale"),
        ({"c_puct": -1}, "c_puct"),
        ({"search_limit": -1}, "search_limit"),
        ({"prefilter_samples": 1}, "prefilter_samples"),
        ({"k": 8, "rollout_budget": 7}, "rollout_budget"),
        ({"prefilter_samples": 32, "rollout_budget": 39}, "rollout_budget"),
        ({"cut": "char"}, "cut"),
        ({"segment_divisor": 0}, "segment_divisor"),
        ({"truncation_policy": "ignore"}, "truncation_policy"),
        ({"splitter": "words"}, "splitter"),
        ({"splitter": "regex"}, "split_pattern"),
        ({"sampling": 3}, "sampling"),
    ]:
        with pytest.raises(ValueError, match=f"^{field_name}:"):
            OmegaPRMConfig(**kwargs)
    config = OmegaPRMConfig(sampling={"temperature": 0.7, "stop": ["\n"]}, rollout_budget=None)
    assert config.sampling == SamplingParams(temperature=0.7, stop=("\n",))
    with pytest.raises(ValueError, match="^token_offsets:"):
        omegaprm_search(problem_for(EXPRESSION), PROMPT, OmegaPRMConfig(cut="token"), run_seed=0)


def test_binary_search_lands_on_the_planted_first_error() -> None:
    for expression in [EXPRESSION, "3+4*2-5+6", "2*3*4+1-9+8", "5+6-2+8-3+9-4+7"]:
        policy = ScriptedPolicy([expression])
        result = run(OmegaPRMConfig(rollout_budget=None), policy, expression)
        assert result.status == "pool_exhausted"
        negatives = [p for p in result.paths if p["meta"]["kind"] == "first_error"]
        assert negatives and result.counters.searches == len(result.selections) > len(negatives) - 1
        found = 0
        for selection in result.selections:
            assert selection["outcome"] == "first_error"
            steps, first_error = true_first_error(result, selection, expression)
            assert first_error >= 0
            path = next(p for p in negatives if p["meta"]["first_error_node_id"] == selection["first_error_node_id"])
            assert path["completions"] == steps[: first_error + 1]
            assert path["first_error_index"] == first_error
            assert path["labels"] == [True] * first_error + [False]
            # A binary search: at most ceil(log2 M) probes for a rollout of M steps (algorithms.md §5).
            rollout_steps = len(steps) - len(result.nodes[selection["node_id"]]["steps"])
            assert len(selection["probes"]) <= math.ceil(math.log2(rollout_steps))
            found += 1
        assert found == len(result.selections)
        # Errors at several positions were searched and found (the pool holds wrong rollouts of all kinds).
        assert len({p["first_error_index"] for p in negatives}) >= 2


def test_paths_carry_measured_values_only() -> None:
    policy = ScriptedPolicy([EXPRESSION])
    result = run(OmegaPRMConfig(rollout_budget=None), policy)
    by_prefix = {node["prefix"]: node for node in result.nodes}
    for path in result.paths:
        assert path["prompt"] == PROMPT and path["label_policy"] == "mc>0" and path["gold_answer"] == "98"
        for t, node_id in enumerate(path["meta"]["node_ids"]):
            if node_id is None:
                assert path["mc_values"][t] is None and path["n_rollouts"][t] is None
                continue
            node = result.nodes[node_id]
            assert path["mc_values"][t] == node["mc"]
            if node["mc_source"] == "monte_carlo":
                assert path["n_rollouts"][t] == 8 and path["n_correct"][t] == node["n_correct"]
        # The last step of a first-error path was measured (a probe with MC = 0 or the terminal answer).
        assert path["mc_values"][-1] == 0.0
        assert path["is_terminal"] == (path["final_answer"] is not None) == (not path["truncated_after_first_error"])
        end = result.nodes[path["meta"]["first_error_node_id"]]
        assert end["prefix"] in by_prefix and end["mc"] == 0.0
    # The rows fit the PATHS table (meta is JSON-encoded by the writer).
    names = [n for n in result.paths[0] if n in PATHS.names and n != "meta"]
    table = pa.Table.from_pylist(result.paths, schema=pa.schema([PATHS.field(n) for n in names]))
    assert table.num_rows == len(result.paths)
    assert len({tuple(p["completions"]) for p in result.paths}) == len(result.paths)


def test_mc_one_goes_right() -> None:
    # From the prefix through step 1 every continuation is correct (MC = 1); a rollout with its error at step 2
    # must be searched past that state (openr v1 stops there, algorithms.md §1.2).
    through_step_1 = " Step 1: 9*9=81"

    def p_correct(prefix: str) -> float:
        return 1.0 if prefix == through_step_1 else 0.5

    policy = ScriptedPolicy([EXPRESSION], p_correct=p_correct)
    result = run(OmegaPRMConfig(rollout_budget=None), policy)
    state = next(n for n in result.nodes if n["prefix"] == through_step_1)
    assert state["mc"] == 1.0 and state["mc_source"] == "monte_carlo"
    step2 = [p for p in result.paths if p["first_error_index"] == 1]
    assert step2, "no search located the planted step-2 error"
    for path in step2:
        assert path["completions"][:2] == ["Step 1: 9*9=81", "Step 2: 81+24=106"]
        assert path["meta"]["node_ids"][0] == state["node_id"] and path["labels"] == [True, False]
    # An MC = 1 state contributes no candidates: none of its rollouts is ever selected.
    assert not any(s["node_id"] == state["node_id"] for s in result.selections)


def test_selection_follows_q_plus_u() -> None:
    for c_puct, length_scale in [(0.125, 500.0), (2.0, 20.0), (0.0, 5.0)]:
        policy = ScriptedPolicy(
            [EXPRESSION], p_correct=lambda prefix: 0.25 + 0.25 * prefix.count("Step"), quota=False, verbose_wrong=True
        )
        config = OmegaPRMConfig(c_puct=c_puct, length_scale=length_scale, rollout_budget=None, search_limit=30)
        result = run(config, policy)
        assert len(result.selections) >= 5
        picked: list[tuple[int, int]] = []
        for i, selection in enumerate(result.selections):
            visits = Counter(node_id for node_id, _ in picked)
            candidates = [
                (node["node_id"], index, rollout)
                for node in result.nodes[: selection["tree_size"]]
                if node["mc_source"] == "monte_carlo" and 0 < node["mc"] < 1
                for index, rollout in enumerate(node["rollouts"])
                if rollout["correct"] is not True and (node["node_id"], index) not in picked
            ]
            best, best_score = None, -math.inf
            for node_id, index, rollout in candidates:  # independent Q + U (algorithms.md §1.1)
                mc = result.nodes[node_id]["mc"]
                q = 0.5 ** (1 - mc) * 0.9 ** (rollout["n_tokens"] / length_scale)
                u = c_puct * math.sqrt(i) / (1 + visits[node_id])
                if q + u > best_score + 1e-12:
                    best, best_score = (node_id, index), q + u
            assert (selection["node_id"], selection["rollout_index"]) == best, f"selection {i}"
            assert selection["score"] == pytest.approx(best_score)
            picked.append(best)
        # Visits count selections of that state only.
        assert sum(node["visits"] for node in result.nodes) == len(result.selections)
        for node in result.nodes:
            assert node["visits"] == sum(1 for s in result.selections if s["node_id"] == node["node_id"])


def test_shortest_wrong_rollout_of_the_root_goes_first() -> None:
    policy = ScriptedPolicy([EXPRESSION], verbose_wrong=True)
    result = run(OmegaPRMConfig(rollout_budget=None, search_limit=1, length_scale=10.0), policy)
    root = result.nodes[0]
    wrong = [(r["n_tokens"], i) for i, r in enumerate(root["rollouts"]) if not r["correct"]]
    assert len({n for n, _ in wrong}) > 1  # the test needs different lengths
    assert result.selections[0]["node_id"] == 0 and result.selections[0]["rollout_index"] == min(wrong)[1]
    assert result.status == "search_limit"


def test_no_rollout_is_selected_twice_and_terminals_are_never_sampled() -> None:
    policy = ScriptedPolicy([EXPRESSION], quota=False, verbose_wrong=True)
    result = run(OmegaPRMConfig(rollout_budget=None), policy)
    picked = [(s["node_id"], s["rollout_index"]) for s in result.selections]
    assert len(picked) == len(set(picked)) > 3
    assert sum(r["selected"] for n in result.nodes for r in n["rollouts"]) == len(picked)
    # Searches that land on the same first error give one path, which counts them.
    assert len({tuple(p["completions"]) for p in result.paths}) == len(result.paths)
    assert sum(p["meta"]["searches"] for p in result.paths) == len(picked) > len(result.paths)
    for request in policy.requests:
        assert "Answer:" not in request.prompt, "a finished solution was sampled"
    terminals = [n for n in result.nodes if n["mc_source"] == "terminal_answer"]
    assert terminals and result.counters.terminal_states == len(terminals)
    for node in terminals:
        assert node["mc"] == 0.0 and node["n_rollouts"] == 0 and node["rollouts"] == [] and node["seed"] is None
        assert node["final_answer"] is not None and "Answer:" in node["prefix"]


def test_identical_prefixes_are_estimated_once() -> None:
    policy = ScriptedPolicy([EXPRESSION], quota=False)
    result = run(OmegaPRMConfig(rollout_budget=None), policy)
    prompts = Counter(r.prompt for r in policy.requests)
    assert max(prompts.values()) == 1
    assert len({r.key for r in policy.requests}) == len(policy.requests)
    assert len({r.sampling.seed for r in policy.requests}) == len(policy.requests)
    assert result.counters.cache_hits > 0  # searches met prefixes measured before
    assert result.counters.estimates == len(policy.requests)
    assert len({n["prefix"] for n in result.nodes}) == len(result.nodes)
    # A state reached a second way keeps its first parent and records the other edge (the tree is a DAG).
    assert any(len(n["edges"]) > 1 for n in result.nodes)
    for node in result.nodes:
        if node["parent_id"] is None:
            assert node["node_id"] == 0 and node["prefix"] == ""
            continue
        parent = result.nodes[node["parent_id"]]
        assert parent["prefix"] + node["action"] == node["prefix"]
        assert node["edges"][0]["parent_id"] == node["parent_id"]
        for edge in node["edges"]:
            assert node["prefix"].startswith(result.nodes[edge["parent_id"]]["prefix"])


@pytest.mark.parametrize("prefilter", [0, 4])
def test_budgets_are_never_exceeded(prefilter: int) -> None:
    stopped_inside = 0
    for budget in range(prefilter + 8, 130, 8):
        policy = ScriptedPolicy([EXPRESSION], quota=False, verbose_wrong=True)
        config = OmegaPRMConfig(rollout_budget=budget, prefilter_samples=prefilter)
        result = run(config, policy)
        assert policy.samples <= budget
        assert result.counters.completions == policy.samples
        assert result.counters.generated_tokens == sum(
            r["n_tokens"] for n in result.nodes for r in n["rollouts"]
        ) + sum(r["n_tokens"] for r in result.prefilter)
        if result.status == "rollout_budget":
            assert policy.samples + 8 > budget  # it stopped only because the next probe would overshoot
            assert result.selections[-1]["outcome"] == "incomplete"
            stopped_inside += 1
    assert stopped_inside > 3
    for limit in (0, 1, 3):
        policy = ScriptedPolicy([EXPRESSION], quota=False, verbose_wrong=True)
        result = run(OmegaPRMConfig(rollout_budget=None, search_limit=limit), policy)
        assert len(result.selections) == result.counters.searches == limit
        assert result.status == "search_limit"


@pytest.mark.parametrize(("p_root", "status"), [(0.0, "root_all_wrong"), (1.0, "root_all_correct")])
def test_root_mc_zero_or_one_ends_the_question(p_root: float, status: str) -> None:
    policy = ScriptedPolicy([EXPRESSION], p_correct=lambda prefix: p_root if prefix == "" else 0.5)
    result = run(OmegaPRMConfig(), policy)
    assert result.status == status and result.root_mc == p_root
    assert len(policy.requests) == 1 and policy.samples == 8
    assert result.selections == [] and result.paths == [] and len(result.nodes) == 1


@pytest.mark.parametrize(
    ("p_root", "status"), [(0.0, "prefiltered_all_wrong"), (1.0, "prefiltered_all_correct"), (0.5, "pool_exhausted")]
)
def test_prefilter_skips_all_right_and_all_wrong_questions(p_root: float, status: str) -> None:
    policy = ScriptedPolicy([EXPRESSION], p_correct=lambda prefix: p_root if prefix == "" else 0.5)
    result = run(OmegaPRMConfig(prefilter_samples=4, rollout_budget=None), policy)
    assert result.status == status
    assert policy.requests[0].n == 4 and policy.requests[0].key == "omegaprm/prefilter"
    assert len(result.prefilter) == 4 and result.counters.prefilter_correct == round(4 * p_root)
    if status.startswith("prefiltered"):
        assert len(policy.requests) == 1 and result.nodes == []
    else:
        assert policy.requests[1].n == 8 and policy.requests[1].key != policy.requests[0].key


def test_truncated_rollouts_follow_the_policy() -> None:
    policy = ScriptedPolicy([EXPRESSION], truncate_every=3)
    result = run(OmegaPRMConfig(rollout_budget=None, truncation_policy="wrong"), policy)
    truncated = [r for n in result.nodes for r in n["rollouts"] if r["finish_reason"] == "length"]
    assert truncated and all(r["correct"] is False and r["verdict_reason"] == "truncated" for r in truncated)
    assert any(r["extracted"] is not None for r in truncated)
    assert not any(r["selected"] for r in truncated)  # a truncated text is no complete wrong solution
    for node in result.nodes:
        if node["mc_source"] == "monte_carlo":  # the denominator stays k
            assert node["n_rollouts"] == 8 and node["mc"] == sum(r["correct"] is True for r in node["rollouts"]) / 8
    with pytest.raises(TruncatedGenerationError):
        run(OmegaPRMConfig(truncation_policy="error"), ScriptedPolicy([EXPRESSION], truncate_every=3))


def test_unparseable_answers_count_as_wrong() -> None:
    def judge(text: str, finish_reason: str) -> Verdict:  # a judge that cannot decide the wrong answers
        extracted = text.rsplit("Answer: ", 1)[-1]
        return Verdict(True, "ok", "98") if extracted == "98" else Verdict(None, "undecided", extracted)

    result = run(OmegaPRMConfig(rollout_budget=None), ScriptedPolicy([EXPRESSION]), judge=judge)
    root = result.nodes[0]
    assert root["mc"] == 0.5 and root["n_rollouts"] == 8
    assert sum(r["correct"] is None for r in root["rollouts"]) == 4
    assert result.selections and result.paths  # an answer that cannot be graded is searched like a wrong one


class Overrides:
    """Wraps a policy; sample i of a listed prefix is replaced by table[prefix][i]; `fill` answers whole prefixes."""

    name = "overrides"
    model = "scripted-arith"

    def __init__(self, policy: ScriptedPolicy, table: dict[str, dict[int, str]], fill: dict[str, str]) -> None:
        self.policy, self.table, self.fill = policy, table, fill

    def generate(self, requests: list[Request]) -> list[list[Sample]]:
        out = []
        for request in requests:
            prefix = request.prompt[len(PROMPT) :]
            if prefix in self.fill:
                self.policy.requests.append(request)
                samples = [Sample(self.fill[prefix], "stop", 1, seed=i) for i in range(request.n)]
            else:
                (samples,) = self.policy.generate([request])
            for i, text in self.table.get(prefix, {}).items():
                samples[i] = Sample(text, "stop", len(token_offsets(text)), seed=samples[i].seed)
            out.append(samples)
        return out


def test_answerless_rollouts_count_as_wrong_and_are_not_searched() -> None:
    # The policy stopped after a correct step without answering: wrong for MC, but its end is no error.
    stopped = " Step 1: 9*9=81"
    engine = Overrides(ScriptedPolicy([EXPRESSION]), {"": {0: stopped}}, {})
    result = drive(omegaprm_search(problem_for(EXPRESSION), PROMPT, OmegaPRMConfig(rollout_budget=None), 7), engine)
    root = result.nodes[0]
    assert root["rollouts"][0]["correct"] is False and root["rollouts"][0]["extracted"] is None
    assert root["mc"] == 3 / 8 and not root["rollouts"][0]["selected"]
    state = next(n for n in result.nodes if n["prefix"] == stopped)
    assert state["mc_source"] == "monte_carlo" and state["mc"] > 0
    assert result.paths
    for path in result.paths:  # the correct step the policy stopped after is never labelled as the error
        assert all(label for step, label in zip(path["completions"], path["labels"], strict=True) if step in stopped)


def test_a_wrong_end_that_is_reachable_yields_no_path() -> None:
    # B's probe measures A's full text (which carries a premature answer) before A is searched; from there the policy
    # still reaches the gold answer, so A's "terminal" state has MC > 0 and A's search finds no first error.
    a_text = " Step 1: 9*9=81 Answer: 5"
    b_text = a_text + " Step 2: 81+24=106 Step 3: 106-7=99 Answer: 99"
    rest = " Step 2: 81+24=105 Step 3: 105-7=98 Answer: 98"
    fill = {
        a_text: " Step 2: 81+24=106 Step 3: 106-7=99 Answer: 99",
        a_text + " Step 2: 81+24=106": " Step 3: 106-7=99 Answer: 99",
    }
    engine = Overrides(ScriptedPolicy([EXPRESSION]), {"": {4: b_text, 5: a_text}, a_text: {0: rest}}, fill)
    config = OmegaPRMConfig(rollout_budget=None, beta=1.0)  # equal Q for equal MC: ties go to sample order
    result = drive(omegaprm_search(problem_for(EXPRESSION), PROMPT, config, 7), engine)
    outcomes = {(s["node_id"], s["rollout_index"]): s["outcome"] for s in result.selections}
    assert list(outcomes)[:2] == [(0, 4), (0, 5)]
    assert outcomes[(0, 5)] == "no_error" and result.counters.searches_without_error == 1
    assert not any(p["completions"] == ["Step 1: 9*9=81 Answer: 5"] for p in result.paths)


def test_token_cut_lands_inside_the_first_wrong_step() -> None:
    policy = ScriptedPolicy([EXPRESSION])
    config = OmegaPRMConfig(cut="token", rollout_budget=None)
    result = run(config, policy, token_offsets=token_offsets)
    assert result.status == "pool_exhausted" and result.paths
    gold = gold_solution(EXPRESSION)
    tau = result.min_segment_tokens
    assert tau is not None and tau >= 1
    for path in result.paths:
        low = result.nodes[path["meta"]["last_correct_node_id"]]
        high = result.nodes[path["meta"]["first_error_node_id"]]
        assert gold.startswith(low["prefix"]) and not gold.startswith(high["prefix"])
        segment = high["prefix"][len(low["prefix"]) :]
        assert len(token_offsets(segment)) < max(2, tau)  # a minimal segment
        assert path["completions"][-1] == segment.strip() and path["labels"][-1] is False
        assert all(v is not None for v in path["mc_values"])  # every token-cut step ends at a measured state
        assert "".join(path["completions"]).replace(" ", "") == high["prefix"].replace(" ", "")
    # The first wrong character of each planted error is inside its first-error segment.
    for selection in result.selections:
        node = result.nodes[selection["node_id"]]
        full = node["prefix"] + node["rollouts"][selection["rollout_index"]]["text"]
        diverge = next(i for i, (a, b) in enumerate(zip(full, gold, strict=False)) if a != b)
        high = result.nodes[selection["first_error_node_id"]]
        low_prefix = next(p for p in result.paths if p["meta"]["first_error_node_id"] == high["node_id"])
        low = result.nodes[low_prefix["meta"]["last_correct_node_id"]]
        assert len(low["prefix"]) <= diverge < len(high["prefix"])


def test_nodes_table_and_positive_paths() -> None:
    policy = ScriptedPolicy([EXPRESSION], quota=False)
    result = run(OmegaPRMConfig(rollout_budget=None, positive_paths=True), policy)
    table = pa.Table.from_pylist(nodes_to_rows(result), schema=NODES_SCHEMA)
    assert table.num_rows == len(result.nodes) and table.schema == NODES_SCHEMA
    assert set(table.column("mc_source").to_pylist()) == {"monte_carlo", "terminal_answer"}
    positives = [p for p in result.paths if p["meta"]["kind"] == "correct_rollout"]
    assert positives
    for path in positives:
        assert all(path["labels"]) and path["first_error_index"] == -1 and path["outcome_correct"] is True
        assert path["final_answer"] == "98" and path["mc_values"][-1] == 1.0 and path["is_terminal"]
        assert exact_first_error(EXPRESSION, path["completions"]) == -1
    assert len({tuple(p["completions"]) for p in positives}) == len(positives)


def test_positive_paths_never_pass_a_prefix_measured_at_zero() -> None:
    # The gold prefix through step 2 never succeeds (MC = 0 once probed), yet gold rollouts from earlier states
    # pass through it: their all-True paths would contradict that estimate, so they are counted, not emitted.
    expression = "5+6-2+8-3+9-4+7"
    policy = ScriptedPolicy([expression], p_correct=lambda prefix: 0.0 if prefix.count("Step") == 2 else 0.5)
    result = run(OmegaPRMConfig(rollout_budget=None, positive_paths=True), policy, expression)
    gold = gold_solution(expression)
    zero = [n for n in result.nodes if n["mc_source"] == "monte_carlo" and n["mc"] == 0.0]
    assert any(gold.startswith(n["prefix"]) and n["prefix"].count("Step") == 2 for n in zero)  # measured
    correct = {
        n["prefix"] + r["text"]
        for n in result.nodes
        if n["mc_source"] == "monte_carlo"
        for r in n["rollouts"]
        if r["correct"] and r["finish_reason"] == "stop"
    }
    positives = [p for p in result.paths if p["meta"]["kind"] == "correct_rollout"]
    assert result.counters.positive_paths_contradicted > 0
    assert len(positives) + result.counters.positive_paths_contradicted == len(correct)
    for path in positives:
        assert all(mc is None or mc > 0 for mc in path["mc_values"])


def test_driver_merges_many_searches() -> None:
    expressions = [EXPRESSION, "3+4*2-5+6", "2*3*4+1-9+8", "40-3*3+7"]
    policy = ScriptedPolicy(expressions, quota=False, verbose_wrong=True)
    config = OmegaPRMConfig(rollout_budget=200)
    searches = [
        omegaprm_search(problem_for(e, f"p{i}"), question_for(e), config, run_seed=3) for i, e in enumerate(expressions)
    ]
    outcomes, stats = run_searches(searches, policy)
    assert all(o.error is None for o in outcomes)
    results = [o.result for o in outcomes]
    assert sum(r.counters.requests for r in results) == stats.requests
    assert sum(r.counters.completions for r in results) == stats.sequences == policy.samples
    assert stats.calls == max(r.counters.requests for r in results)  # one engine call per round, merged
    assert max(stats.call_sequences) == 8 * len(expressions)
    for result in results:
        assert result.counters.completions <= 200
        for path in result.paths:
            expression = next(e for e in expressions if question_for(e) == path["prompt"])
            assert exact_first_error(expression, path["completions"]) == path["first_error_index"]
