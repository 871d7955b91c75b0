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
    OmegaPRMConfig,
    OmegaPRMResult,
    auto_rollout_budget,
    omegaprm_search,
    probes_per_search,
)
from annotators.omegaprm_rows import nodes_to_rows
from annotators.steps import split_steps
from domains.arithmetic import canonical_steps, evaluate, exact_first_error, format_step, gold_solution, question_for
from engines.driver import run_searches
from schemas.records import Problem, Request, Sample, SamplingParams
from schemas.tables import OMEGAPRM_NODES, PATHS

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
        ({"rollout_budget": "automatic"}, "rollout_budget"),
        ({"rollout_budget": True}, "rollout_budget"),
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
            # A binary search: at most ceil(log2 M) probes for a rollout of M steps, sampled, cached or implied.
            rollout_steps = len(steps) - len(result.nodes[selection["node_id"]]["steps"])
            probes = len(selection["probes"]) + len(selection["implied"])
            assert probes <= math.ceil(math.log2(rollout_steps)) == probes_per_search(rollout_steps)
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
    # must be searched past that state (openr v1 stops there, docs/methods.md §1.2).
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
            for node_id, index, rollout in candidates:  # independent Q + U (docs/methods.md §1.1)
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
    expression = "5+6-2+8-3+9-4+7"  # 7 steps: searches of 3 probes, which the budget can cut short
    for budget in range(prefilter + 8, 130, 8):
        policy = ScriptedPolicy([expression], quota=False, verbose_wrong=True)
        config = OmegaPRMConfig(rollout_budget=budget, prefilter_samples=prefilter)
        result = run(config, policy, expression)
        assert result.rollout_budget == budget
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
    def grade(text: str, finish_reason: str) -> Verdict:  # a grader that cannot decide the wrong answers
        extracted = text.rsplit("Answer: ", 1)[-1]
        return Verdict(True, "ok", "98") if extracted == "98" else Verdict(None, "undecided", extracted)

    result = run(OmegaPRMConfig(rollout_budget=None), ScriptedPolicy([EXPRESSION]), grade=grade)
    root = result.nodes[0]
    assert root["mc"] == 0.5 and root["n_rollouts"] == 8
    assert sum(r["correct"] is None for r in root["rollouts"]) == 4
    assert result.selections and result.paths  # an answer that cannot be graded is searched like a wrong one


class Overrides:
    """Wraps a policy; sample i of a listed prefix is replaced by table[prefix][i]; `fill` answers whole prefixes."""

    name = "overrides"
    model = "scripted-arith"

    def __init__(
        self, policy: ScriptedPolicy, table: dict[str, dict[int, str]], fill: dict[str, str], prompt: str = PROMPT
    ) -> None:
        self.policy, self.table, self.fill, self.prompt = policy, table, fill, prompt

    def generate(self, requests: list[Request]) -> list[list[Sample]]:
        out = []
        for request in requests:
            prefix = request.prompt[len(self.prompt) :]
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
    implied_lows = 0
    for path in result.paths:
        high = result.nodes[path["meta"]["first_error_node_id"]]
        assert not gold.startswith(high["prefix"])
        assert len(token_offsets(path["completions"][-1])) < max(2, tau)  # a minimal segment
        assert path["labels"][-1] is False and high["prefix"].endswith(path["completions"][-1])
        # Every token-cut step ends at a measured state, but a lower bound a witness implied (no node, no value).
        implied = {s["step_index"]: s for s in path["meta"]["implied_steps"]}
        for t, value in enumerate(path["mc_values"]):
            assert (value is None) == (t in implied)
        if path["meta"]["last_correct_node_id"] is None:
            (witness,) = implied.values()
            assert witness["value"] == "positive" and witness["step_index"] == len(path["completions"]) - 2
            assert gold.startswith(result.nodes[witness["by_node_id"]]["prefix"])
            implied_lows += 1
        else:
            low = result.nodes[path["meta"]["last_correct_node_id"]]
            assert (
                gold.startswith(low["prefix"])
                and high["prefix"][len(low["prefix"]) :].strip() == path["completions"][-1]
            )
        assert "".join(path["completions"]).replace(" ", "") == high["prefix"].replace(" ", "")
    assert implied_lows  # the toy tokenizer cuts rollouts of different states at different points
    # The first wrong character of each planted error is inside its first-error segment.
    for selection in result.selections:
        node = result.nodes[selection["node_id"]]
        full = node["prefix"] + node["rollouts"][selection["rollout_index"]]["text"]
        diverge = next(i for i, (a, b) in enumerate(zip(full, gold, strict=False)) if a != b)
        high = result.nodes[selection["first_error_node_id"]]
        path = next(p for p in result.paths if p["meta"]["first_error_node_id"] == high["node_id"])
        error = high["prefix"].rindex(path["completions"][-1])
        assert error <= diverge < len(high["prefix"])


def test_nodes_table_and_positive_paths() -> None:
    policy = ScriptedPolicy([EXPRESSION], quota=False)
    result = run(OmegaPRMConfig(rollout_budget=None, positive_paths=True), policy)
    table = pa.Table.from_pylist(nodes_to_rows(result), schema=OMEGAPRM_NODES)
    assert table.num_rows == len(result.nodes) and table.schema == OMEGAPRM_NODES
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


# -------------------------------------------------------------------------------------------------------------
# Implied probes (docs/omegaprm.md, "Implied probes")

LONG = "1+2+3+4+5+6+7+8+9+10+11+12-13-14+15+16"  # 16 steps


@pytest.mark.parametrize("cut", ["step", "token"])
def test_implied_probes_are_sound_counted_and_never_sampled(cut: str) -> None:
    # quota=True: MC is exactly 0.5 on the gold solution and 0 off it, so every measurement has the sign of the
    # truth and an implied value can be checked against the truth as well as against its evidence.
    implied_by_value: Counter[str] = Counter()
    for expression in [EXPRESSION, "3+4*2-5+6", "5+6-2+8-3+9-4+7", LONG]:
        for verbose in (False, True):
            policy = ScriptedPolicy([expression], verbose_wrong=verbose)
            kwargs = {"token_offsets": token_offsets} if cut == "token" else {}
            result = run(OmegaPRMConfig(rollout_budget=None, cut=cut), policy, expression, **kwargs)
            gold = gold_solution(expression)
            asked = {request.prompt[len(question_for(expression)) :] for request in policy.requests}
            nodes = {node["prefix"]: node for node in result.nodes}
            counted: Counter[str] = Counter()
            for selection in result.selections:
                for entry in selection["implied"]:
                    probe, evidence = entry["prefix"], result.nodes[entry["by_node_id"]]
                    assert probe not in asked and probe not in nodes  # not sampled, no node: not a measurement
                    assert evidence["mc_source"] == "monte_carlo" and probe != evidence["prefix"]
                    if entry["value"] == "zero":
                        assert evidence["mc"] == 0.0 and probe.startswith(evidence["prefix"])
                        assert not gold.startswith(probe)  # true: the probe is off the gold solution
                    else:
                        assert evidence["mc"] > 0 and evidence["prefix"].startswith(probe)
                        assert gold.startswith(probe)
                    counted[entry["value"]] += 1
            assert counted["zero"] == result.counters.probes_implied_zero
            assert counted["positive"] == result.counters.probes_implied_positive
            implied_by_value.update(counted)
            # The tree holds measurements only: every node was sampled (the root included) or is a terminal.
            assert len(result.nodes) == result.counters.estimates + result.counters.terminal_states
            assert result.counters.estimates == len(policy.requests)
            if cut == "step":  # and the searches still land on the exact first error
                for path in result.paths:
                    assert exact_first_error(expression, path["completions"]) == path["first_error_index"]
                    implied = {s["step_index"] for s in path["meta"]["implied_steps"]}
                    for t, node_id in enumerate(path["meta"]["node_ids"]):
                        assert (node_id is None) == (path["mc_values"][t] is None)
                        assert t not in implied or node_id is None
                    # The first-error step was measured at 0, or it extends a measured zero inside it (a verbose
                    # step holds the end of another rollout's shorter step).
                    last = len(path["completions"]) - 1
                    assert (
                        path["mc_values"][-1] == 0.0
                        or {"step_index": last, "value": "zero"}.items()
                        <= next(s for s in path["meta"]["implied_steps"] if s["step_index"] == last).items()
                    )
    assert implied_by_value["zero"] > 3 and implied_by_value["positive"] > 3


def test_a_prefix_extending_a_measured_zero_is_not_probed() -> None:
    # Rollout A (error at step 2) is searched first and measures its prefix through step 2 at MC = 0. Rollout B has
    # the same step 2 and a verbose remark after it, so its probe through step 4 extends that measured zero.
    expression = "5+6-2+8-3+9-4+7"  # 7 steps
    a_text, b_text = planted(expression, 2), planted(expression, 2, verbose=True)
    engine = Overrides(ScriptedPolicy([expression]), {"": {4: a_text, 5: b_text}}, {}, question_for(expression))
    # Equal Q for equal MC and no exploration term: ties go to sample order, so A then B.
    config = OmegaPRMConfig(rollout_budget=None, beta=1.0, c_puct=0.0, search_limit=2)
    result = drive(omegaprm_search(problem_for(expression), question_for(expression), config, 7), engine)
    first, second = result.selections
    assert (first["node_id"], first["rollout_index"], second["node_id"], second["rollout_index"]) == (0, 4, 0, 5)
    zero = result.nodes[first["probes"][-1]]
    assert zero["prefix"] == a_text[: a_text.index(" Step 3")] and zero["mc"] == 0.0
    # B: the probes through step 3 and through the verbose step 2 both extend the zero (implied, not sampled); the
    # one through step 1 is cached. No request, and B's first error is step 2 all the same.
    assert second["implied"] == [
        {
            "cut": cut,
            "prefix": b_text[: b_text.index(f" Step {cut + 1}")],
            "value": "zero",
            "by_node_id": zero["node_id"],
        }
        for cut in (3, 2)
    ]
    assert second["probes"] == [first["probes"][1]] and result.nodes[first["probes"][1]]["steps"] == ["Step 1: 5+6=11"]
    assert result.counters.probes_implied_zero == 2 and result.counters.estimates == 1 + 3  # root, A's 3 probes
    path = next(p for p in result.paths if p["meta"]["rollout_index"] == 5)
    assert path["first_error_index"] == 1 == exact_first_error(expression, path["completions"])
    # Its first-error step was implied, not measured: no MC value, no node, and the row says what implied it.
    assert path["mc_values"] == [0.5, None] and path["meta"]["first_error_node_id"] is None
    assert path["meta"]["implied_steps"] == [{"step_index": 1, "value": "zero", "by_node_id": zero["node_id"]}]


def test_a_search_whose_end_is_measured_reachable_samples_nothing() -> None:
    # A stops with a premature wrong answer after 4 correct steps; B is A plus three more steps. B's search measures
    # A's full text at MC = 1/8 (the policy can go on past the premature answer to the gold one), so when A is
    # searched its probes are inside a prefix measured at MC > 0: implied or cached, no request, no error.
    expression = "5+6-2+8-3+9-4+7"  # 7 steps: 11, 9, 17, 14, 23, 19, 26
    question = question_for(expression)
    gold = gold_solution(expression)
    a_text = gold[: gold.index(" Step 5")] + " Answer: 5"
    b_text = a_text + " Step 5: 14+9=24 Step 6: 24-4=20 Step 7: 20+7=27 Answer: 27"
    step_5 = a_text + " Step 5: 14+9=24"
    fill = {a_text: b_text[len(a_text) :], step_5: b_text[len(step_5) :]}
    table = {"": {4: b_text, 5: a_text}, a_text: {0: " Step 5: 14+9=23 Step 6: 23-4=19 Step 7: 19+7=26 Answer: 26"}}
    engine = Overrides(ScriptedPolicy([expression]), table, fill, question)
    config = OmegaPRMConfig(rollout_budget=None, beta=1.0, c_puct=0.0, search_limit=2)  # B then A, as above
    result = drive(omegaprm_search(problem_for(expression), question, config, 7), engine)
    b_search, a_search = result.selections
    assert (b_search["rollout_index"], a_search["rollout_index"]) == (4, 5)
    assert b_search["outcome"] == "first_error" and len(b_search["probes"]) == 3  # through steps 3, 5 and 4 (A)
    a_node = next(n for n in result.nodes if n["prefix"] == a_text)
    assert a_node["mc_source"] == "monte_carlo" and a_node["mc"] == 1 / 8
    assert a_search["outcome"] == "no_error" and result.counters.searches_without_error == 1
    assert a_search["implied"] == [
        {"cut": 2, "prefix": gold[: gold.index(" Step 3")], "value": "positive", "by_node_id": b_search["probes"][0]}
    ]
    assert a_search["probes"] == [b_search["probes"][0]]  # through step 3: cached
    assert result.counters.estimates == 1 + 3 and result.counters.probes_implied_positive == 1


# -------------------------------------------------------------------------------------------------------------
# The rollout budget (docs/omegaprm.md, "Rollout budget")

CHAIN_32 = "10" + "".join("+3" if i % 2 else "-2" for i in range(32))  # a 32-step running-total chain


class SlipPolicy:
    """A fake engine for running-total chains with many distinct wrong solutions: it continues a prefix of whole
    steps from the prefix's last result, and each step slips (its result off by 1..9) with probability `slip`, so
    about half the solutions from the root are right at slip = 1 - 0.5^(1/M). A slip only ever adds, so a prefix
    off the gold solution never reaches the gold answer and every first error is exact."""

    name = "slips"
    model = "slip-chain"

    def __init__(self, expression: str, slip: float) -> None:
        self.question, self.operations, self.slip = question_for(expression), canonical_steps(expression), slip
        self.requests: list[Request] = []

    def generate(self, requests: list[Request]) -> list[list[Sample]]:
        out = []
        for request in requests:
            self.requests.append(request)
            prefix = request.prompt[len(self.question) :]
            done = prefix.count("Step ")
            total = int(prefix.rsplit("=", 1)[1]) if done else self.operations[0][0]
            samples = []
            for i in range(request.n):
                rng = random.Random(f"{request.sampling.seed}/{i}")
                text, value = "", total
                for index, (_, op, b, _) in enumerate(self.operations[done:], start=done + 1):
                    result = value + b if op == "+" else value - b
                    result += rng.randint(1, 9) if rng.random() < self.slip else 0
                    text += " " + format_step(index, (value, op, b, result))
                    value = result
                text += f" Answer: {value}"
                samples.append(Sample(text, "stop", len(token_offsets(text)), seed=request.sampling.seed + i))
            out.append(samples)
        return out


def test_probes_per_search_and_the_auto_budget_formula() -> None:
    assert [probes_per_search(m) for m in (1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33)] == [0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    for m in range(1, 70):
        assert probes_per_search(m) == (math.ceil(math.log2(m)) if m > 1 else 0)
    # A token cut stops splitting below the minimal segment: 100 tokens at tau = 6.25 -> 50, 25, 13, 7, 4.
    assert probes_per_search(100, lambda n: n >= max(2, 6.25)) == 5
    assert auto_rollout_budget(k=8, search_limit=100, prefilter_samples=0, max_probes=5) == 4008
    assert auto_rollout_budget(k=8, search_limit=100, prefilter_samples=32, max_probes=3) == 2440


def test_auto_budget_is_sized_from_the_roots_longest_rollout() -> None:
    assert OmegaPRMConfig().rollout_budget == "auto"
    for expression, prefilter, probes in [(EXPRESSION, 0, 2), ("5+6-2+8-3+9-4+7", 4, 3), (CHAIN_32, 0, 5)]:
        policy = ScriptedPolicy([expression])
        result = run(OmegaPRMConfig(prefilter_samples=prefilter, search_limit=7), policy, expression)
        steps = len(canonical_steps(expression))  # every sampled solution has them all (the answer joins the last)
        assert probes_per_search(steps) == probes
        assert result.rollout_budget == prefilter + 8 + 7 * probes * 8
        assert result.counters.completions <= result.rollout_budget and result.status != "rollout_budget"
    policy = ScriptedPolicy([EXPRESSION])
    result = run(OmegaPRMConfig(cut="token"), policy, token_offsets=token_offsets)
    tau = result.min_segment_tokens
    longest = max(len(token_offsets(r["text"])) for r in result.nodes[0]["rollouts"])
    probes = probes_per_search(longest, lambda n: n >= max(2, tau))
    assert result.rollout_budget == 8 + 100 * probes * 8


def test_a_fixed_budget_ends_long_searches_and_auto_does_not() -> None:
    # The point: a fixed 400 completions end the search of a 32-step chain (up to 5 probes of 8 a search)
    # before its pool or its search limit does; `auto` leaves that to them.
    fixed = run(OmegaPRMConfig(rollout_budget=400), SlipPolicy(CHAIN_32, slip=0.05), CHAIN_32)
    assert fixed.status == "rollout_budget" and fixed.counters.completions <= 400
    auto = run(OmegaPRMConfig(), SlipPolicy(CHAIN_32, slip=0.05), CHAIN_32)
    assert auto.status == "pool_exhausted" and auto.counters.searches > fixed.counters.searches
    assert (
        auto.counters.searches_incomplete == 0 and auto.counters.completions <= auto.rollout_budget == 8 + 100 * 5 * 8
    )
    limited = run(OmegaPRMConfig(search_limit=12), SlipPolicy(CHAIN_32, slip=0.05), CHAIN_32)
    assert limited.status == "search_limit" and limited.rollout_budget == 8 + 12 * 5 * 8
    for result in (fixed, auto, limited):  # and the searches that ran found the exact first errors
        assert result.paths
        for path in result.paths:
            assert exact_first_error(CHAIN_32, path["completions"]) == path["first_error_index"] >= 0
    # Short chains are cheaper per search, so an int that was enough there still is.
    short = run(OmegaPRMConfig(rollout_budget=400, search_limit=10), ScriptedPolicy([EXPRESSION]), EXPRESSION)
    assert short.status in ("search_limit", "pool_exhausted")


def test_config_file_validation_of_the_budget() -> None:
    from schemas.config import ConfigError, config_from_dict
    from transforms.search import omegaprm_config

    base = {"input": {"path": "problems.jsonl"}, "policy": {"model": "m"}, "search": {"method": "omegaprm"}}
    assert omegaprm_config(config_from_dict(base)).rollout_budget == "auto"  # the default
    for value, expected in [("auto", "auto"), (400, 400), (None, None)]:
        config = config_from_dict(base, [f"search.omegaprm.rollout_budget={'null' if value is None else value}"])
        assert omegaprm_config(config).rollout_budget == expected
    for value in ("lots", "true", "0", "2.5"):
        with pytest.raises(ConfigError, match=r"^search\.omegaprm\.rollout_budget: must be a whole number"):
            config_from_dict(base, [f"search.omegaprm.rollout_budget={value}"])
    config = config_from_dict(base, ["search.omegaprm.rollout_budget=5"])  # under k: OmegaPRMConfig says so
    with pytest.raises(ConfigError, match=r"^search\.omegaprm\.rollout_budget: must be 'auto', None or an integer"):
        omegaprm_config(config)


def test_the_counters_reach_the_manifest_and_the_card(tmp_path) -> None:
    # transforms/search.py sums each result's counters into its batch's stats; the manifest sums the batches and
    # the card shows them.
    import json
    from dataclasses import asdict

    from pipelines.card import render_card
    from pipelines.manifest import engine_stats
    from tests.test_publish import card_table, make_run

    batches = []
    for expression in ("5+6-2+8-3+9-4+7", LONG):
        result = run(OmegaPRMConfig(), ScriptedPolicy([expression], verbose_wrong=True), expression)
        counters = asdict(result.counters)
        batches.append({"call_sequences": [8], "engine_seconds": 1.0, "generated_tokens": 1, "omegaprm": counters})
    (tmp_path / "_work").mkdir()
    (tmp_path / "_work" / "engine_stats.json").write_text(json.dumps(batches))
    summed = engine_stats(str(tmp_path), capacity=64)["omegaprm_counters"]
    for name in ("probes_implied_zero", "probes_implied_positive", "searches_incomplete"):
        assert summed[name] == sum(b["omegaprm"][name] for b in batches)
    assert summed["probes_implied_zero"] > 0 and summed["probes_implied_positive"] > 0

    run_dir = make_run(tmp_path / "card")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["engine"]["omegaprm_counters"] = summed
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    table = card_table(render_card(run_dir))
    assert table["OmegaPRM probes skipped (they extend a prefix measured at MC = 0)"] == str(
        summed["probes_implied_zero"]
    )
    assert table["OmegaPRM probes skipped (a prefix measured at MC > 0 extends them)"] == str(
        summed["probes_implied_positive"]
    )
    assert table["OmegaPRM searches stopped by the rollout budget"] == "0"
