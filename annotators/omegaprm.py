"""OmegaPRM (Luo et al. 2024, arXiv 2406.06592) as a search coroutine; docs/omegaprm.md.

The paper's algorithm, not openr's version (docs/omegaprm.md, "Re-implementations", lists what openr gets wrong):

- the root is MC-estimated with k rollouts; a root MC of 0 or 1 ends the question with a status;
- the candidate pool holds the unselected *incorrect* rollouts of measured states with 0 < MC < 1;
- selection is argmax Q + U, Q = α^(1−MC(s))·β^(len(r)/L) (len in tokens), U = c_puct·sqrt(Σ_all N)/(1+N(s));
  N(s) of the selected state only is raised, and a selected rollout leaves the pool for good;
- a binary search over the rollout locates the first error: MC > 0 (MC = 1 included) goes right, MC = 0 left.
  Its upper end is the full wrong solution, a terminal state with MC = 0 that is never sampled;
- identical prefixes are estimated once (a prefix cache, so the tree is a DAG);
- a probe whose answer the measured states already imply is not sampled: one extending a prefix measured at MC = 0
  is 0, one inside a prefix measured at MC > 0 is > 0 (counted as `probes_implied_zero`/`_positive`; soundness in
  docs/omegaprm.md, "Implied probes"). An implied probe is a decision, not a measurement: it leaves no node in the
  tree and no MC value in a row; the selection lists it, and a row whose step ends at one says so in
  `meta.implied_steps`;
- the rollout budget is checked before every request, inside the binary search too: it is never exceeded. The
  default, `auto`, is sized from the root's longest rollout so that the search limit ends the search first.

Each round of the coroutine yields the requests of ONE step of the search (the pre-filter, the root estimate or one
binary-search probe: one `Request` with n = k); the driver (`engines.driver.run_searches`) merges the rounds of
many problems into one engine call (docs/design.md §6).

What the result holds (its rows are laid out by `annotators.omegaprm_rows`):

- `nodes`: the lossless search graph (`schemas.tables.OMEGAPRM_NODES`), every state with its rollouts, verdicts
  and visit count.
- `paths`: labelled paths (the `schemas.tables.PATHS` columns the search knows):
  * one per distinct first error found by a binary search (two searches that land on the same first-error state
    give one row; `meta["searches"]` counts them). Steps run from the question through the first-error step;
    labels are True before it and False on it (every step inside a positive edge is True);
    `mc_values`/`n_correct`/`n_rollouts` are set where the prefix through that step was measured and None
    elsewhere (never invented, nor implied). A terminal first-error step carries its graded answer (0.0, 0 of 1),
    as `annotators.mc.label_paths` does for the last step;
  * with `positive_paths=True`, also one all-True path per distinct correct rollout of a measured state, unless it
    passes through a prefix measured at MC = 0: a True label there would contradict that estimate (one rollout
    that got through against k that did not), and on the tiny model such rollouts are mostly lucky answers after
    a wrong step (`bench/bench_omegaprm.py`); they are counted, not emitted.
- `selections`: the (state, rollout) picked by each search with its Q, U and outcome, its sampled or cached probes
  and its implied ones, in order.

Rollouts that stopped on the length limit are scored by `truncation_policy`; unparseable or missing answers count
as wrong (the denominator stays k). Only complete wrong solutions (finish_reason "stop", an extracted final answer)
enter the pool: a truncated or answerless text ends where the policy stopped, so its end is no first error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

from annotators.answers import TRUNCATION_POLICIES, TruncatedGenerationError, Verdict, judge_text
from annotators.omegaprm_rows import node_row, path_row, rollout_row
from annotators.steps import SPLITTERS, split_steps
from schemas.records import Problem, Request, Sample, SamplingParams, derive_seed, prefix_key

CUTS = ("step", "token")
MC_SOURCES = ("monte_carlo", "terminal_answer")
STATUSES = (
    "prefiltered_all_correct",
    "prefiltered_all_wrong",
    "root_all_correct",
    "root_all_wrong",
    "pool_exhausted",
    "search_limit",
    "rollout_budget",
)


Grader = Callable[[str, str], Verdict]  # (solution text, finish_reason) -> verdict; the gold answer is bound
Splitter = Callable[[str], tuple[list[str], list[int]]]  # text -> (steps, step_ends), text[:step_ends[t]] lossless
TokenOffsets = Callable[[str], list[int]]  # text -> char offsets of token boundaries


@dataclass(frozen=True)
class OmegaPRMConfig:
    """The knobs of one OmegaPRM search; defaults are the paper's (docs/omegaprm.md, "Output").

    `rollout_budget` caps every completion of a question, pre-filter samples included: an int is that many, None
    is no cap, and "auto" (the default) is what `search_limit` searches can need at most on this question,
    `auto_rollout_budget`, sized once the root is estimated from the longest solution sampled from the root
    (docs/omegaprm.md, "Rollout budget"). A fixed number ends long searches early: at k = 8 and 32 steps a search
    costs up to 5 probes of 8, so 400 pays for about 10 searches where the paper's search limit is 100.
    `cut="step"` cuts at the splitter's step boundaries; `cut="token"` cuts at token midpoints and stops splitting
    a segment shorter than mean_solution_tokens / `segment_divisor` tokens (MENG's reading of the paper's §4.2).
    `sampling.seed` is ignored: every request gets its own seed.
    """

    k: int = 8
    alpha: float = 0.5
    beta: float = 0.9
    length_scale: float = 500.0
    c_puct: float = 0.125
    search_limit: int = 100
    rollout_budget: int | str | None = "auto"
    prefilter_samples: int = 0  # 0 = off; the paper screens with 32 full solutions
    cut: str = "step"
    segment_divisor: int = 16
    sampling: SamplingParams = field(default_factory=SamplingParams)
    splitter: str = "auto"
    split_pattern: str | None = None
    truncation_policy: str = "wrong"
    positive_paths: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.sampling, dict):  # YAML gives a mapping
            sampling = dict(self.sampling)
            if "stop" in sampling:
                sampling["stop"] = tuple(sampling["stop"] or ())
            object.__setattr__(self, "sampling", SamplingParams(**sampling))
        if not isinstance(self.sampling, SamplingParams):
            raise ValueError(f"sampling: expected SamplingParams or a mapping, got {type(self.sampling).__name__}")
        _check(_is_int(self.k) and self.k >= 1, "k", "must be an integer >= 1", self.k)
        _check(0 < self.alpha <= 1, "alpha", "must be in (0, 1]", self.alpha)
        _check(0 < self.beta <= 1, "beta", "must be in (0, 1]", self.beta)
        _check(self.length_scale > 0, "length_scale", "must be > 0", self.length_scale)
        _check(self.c_puct >= 0, "c_puct", "must be >= 0", self.c_puct)
        _check(_is_int(self.search_limit) and self.search_limit >= 0, "search_limit", "must be >= 0", self.search_limit)
        _check(
            _is_int(self.prefilter_samples) and (self.prefilter_samples == 0 or self.prefilter_samples >= 2),
            "prefilter_samples",
            "must be 0 (off) or >= 2 (a single sample cannot be both right and wrong)",
            self.prefilter_samples,
        )
        if self.rollout_budget is not None and self.rollout_budget != "auto":
            need = self.prefilter_samples + self.k
            _check(
                _is_int(self.rollout_budget) and self.rollout_budget >= need,
                "rollout_budget",
                f"must be 'auto', None or an integer >= prefilter_samples + k = {need}",
                self.rollout_budget,
            )
        _check(self.cut in CUTS, "cut", f"must be one of {CUTS}", self.cut)
        divisor = self.segment_divisor
        _check(_is_int(divisor) and divisor >= 1, "segment_divisor", "must be an integer >= 1", divisor)
        _check(self.splitter in SPLITTERS, "splitter", f"must be one of {SPLITTERS}", self.splitter)
        _check(
            (self.split_pattern is not None) == (self.splitter == "regex"),
            "split_pattern",
            "is required with splitter='regex' and only then",
            self.split_pattern,
        )
        policy = self.truncation_policy
        _check(policy in TRUNCATION_POLICIES, "truncation_policy", f"must be one of {TRUNCATION_POLICIES}", policy)
        _check(isinstance(self.positive_paths, bool), "positive_paths", "must be a bool", self.positive_paths)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(ok: bool, name: str, rule: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{name}: {rule}, got {value!r}")


@dataclass
class OmegaPRMCounters:
    """What one question cost and what the search did."""

    completions: int = 0  # samples received, pre-filter included
    generated_tokens: int = 0
    requests: int = 0
    searches: int = 0  # selected rollouts (binary searches started)
    searches_incomplete: int = 0  # stopped by the rollout budget before locating the error
    searches_without_error: int = 0  # the rollout's end turned out to be reachable (MC > 0): nothing to label
    estimates: int = 0  # prefixes MC-estimated by sampling (root included)
    cache_hits: int = 0  # probes answered by the prefix cache
    # Probes decided without sampling by what the cache implies (docs/omegaprm.md, "Implied probes"): the probe
    # extends a prefix measured at MC = 0 (so it is 0), or lies inside one measured at MC > 0 (so it is > 0).
    probes_implied_zero: int = 0
    probes_implied_positive: int = 0
    terminal_states: int = 0  # full wrong solutions turned into MC = 0 states without sampling
    prefilter_correct: int = 0
    positive_paths_contradicted: int = 0  # correct rollouts not emitted: they pass a prefix measured at MC = 0


@dataclass
class OmegaPRMResult:
    """Everything one OmegaPRM search produced for one problem (see the module docstring)."""

    problem_id: str
    status: str
    counters: OmegaPRMCounters
    root_mc: float | None = None
    min_segment_tokens: float | None = None  # token cut only
    # The budget that applied, an "auto" one as sized; None: no cap, or "auto" ended before the root sized it.
    rollout_budget: int | None = None
    nodes: list[dict[str, Any]] = field(default_factory=list)
    paths: list[dict[str, Any]] = field(default_factory=list)
    selections: list[dict[str, Any]] = field(default_factory=list)
    prefilter: list[dict[str, Any]] = field(default_factory=list)


def probes_per_search(units: int, splittable: Callable[[int], bool] = lambda n: n >= 2) -> int:
    """The most probes one binary search over `units` cut units can make: ceil(log2 units) when every segment of
    two or more units is split (step cut); `splittable(n)` says whether a segment of n units is split."""
    probes = 0
    while splittable(units):
        units -= units // 2  # the worst side of the midpoint
        probes += 1
    return probes


def auto_rollout_budget(k: int, search_limit: int, prefilter_samples: int, max_probes: int) -> int:
    """`rollout_budget: auto`: the pre-filter, the root estimate, and `search_limit` searches of `max_probes`
    probes of k rollouts each, so that the search limit, not the budget, ends the question's search."""
    return prefilter_samples + k + search_limit * max_probes * k


def omegaprm_search(
    problem: Problem,
    prompt: str,
    config: OmegaPRMConfig,
    run_seed: int,
    grade: Grader | None = None,
    token_offsets: TokenOffsets | None = None,
    split: Splitter | None = None,
) -> Generator[list[Request], list[list[Sample]], OmegaPRMResult]:
    """The OmegaPRM search for one problem as a coroutine (yields requests, receives samples, returns the result).

    `prompt` is the rendered prompt; a rollout from prefix p is sampled from `prompt + p` and its text is appended
    to p. `grade(text, finish_reason)` grades a full solution text against `problem.answer` (default:
    `annotators.answers.judge_text`); `split` cuts a continuation into steps (default: `annotators.steps.split_steps`
    with the configured splitter); `token_offsets` is required for `cut="token"` and gives `action_tokens` otherwise.
    """
    if config.cut == "token" and token_offsets is None:
        raise ValueError("token_offsets: required with cut='token'")
    if grade is None:

        def grade(text: str, finish_reason: str) -> Verdict:
            return judge_text(text, finish_reason, problem.answer, truncation_policy=config.truncation_policy)

    if split is None and config.cut == "step":

        def split(text: str) -> tuple[list[str], list[int]]:
            return split_steps(text, config.splitter, config.split_pattern)

    return _Search(problem, prompt, config, run_seed, grade, split, token_offsets).run()


# ---------------------------------------------------------------------------------------------------------------
# Internals


@dataclass
class _Rollout:
    text: str
    finish_reason: str
    n_tokens: int
    seed: int | None
    correct: bool | None
    extracted: str | None
    reason: str
    selected: bool = False

    def searchable(self) -> bool:
        # Pool = incorrect rollouts (docs/omegaprm.md, "Pool"), complete ones only: a truncated or
        # answerless text ends where the policy stopped, not at an error, so its end is no terminal state.
        return (
            self.correct is not True
            and self.finish_reason == "stop"
            and self.extracted is not None
            and bool(self.text.strip())
        )


@dataclass
class _Node:
    node_id: int
    prefix: str
    parent_id: int | None
    action: str
    action_tokens: int | None
    single_step: bool
    steps: list[str]
    step_ends: list[int]
    mc: float
    mc_source: str
    n_correct: int = 0
    n_rollouts: int = 0
    visits: int = 0
    final_answer: str | None = None
    request_key: str | None = None
    seed: int | None = None
    rollouts: list[_Rollout] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Segmentation:
    """Cut points of one rollout text: segment j spans text[bounds[j-1]:bounds[j]]."""

    text: str
    bounds: list[int]
    steps: list[str] | None  # step cut: one step text per segment

    @property
    def last(self) -> int:
        return len(self.bounds) - 1

    def pieces(self, cuts: list[int]) -> list[str]:
        """Step texts of the path through the cut indices `cuts` (ascending, from 0)."""
        if self.steps is not None:
            return [self.steps[j - 1] for j in range(cuts[0] + 1, cuts[-1] + 1)]
        return [self.text[self.bounds[a] : self.bounds[b]].strip() for a, b in pairwise(cuts)]

    def ends(self, cuts: list[int]) -> list[int]:
        if self.steps is not None:
            return [self.bounds[j] for j in range(cuts[0] + 1, cuts[-1] + 1)]
        return [self.bounds[b] for b in cuts[1:]]


class _Search:
    def __init__(
        self,
        problem: Problem,
        prompt: str,
        config: OmegaPRMConfig,
        run_seed: int,
        grade: Grader,
        split: Splitter | None,
        token_offsets: TokenOffsets | None,
    ) -> None:
        self.problem = problem
        self.prompt = prompt
        self.config = config
        self.run_seed = run_seed
        self.grade = grade
        self.split = split
        self.token_offsets = token_offsets
        self.counters = OmegaPRMCounters()
        self.nodes: list[_Node] = []
        self.cache: dict[str, _Node] = {}  # prefix text -> state: identical prefixes are estimated once (MENG)
        self.pool: list[tuple[int, int]] = []  # (node_id, rollout index), insertion order breaks ties
        self.selections: list[dict[str, Any]] = []
        self.prefilter: list[_Rollout] = []
        self.paths: dict[tuple[str, ...], dict[str, Any]] = {}
        self.min_segment: float = 1.0
        # An "auto" budget is sized after the root estimate; until then only the pre-filter and the root are asked,
        # which the config guarantees any budget covers.
        self.budget: int | None = None if config.rollout_budget == "auto" else config.rollout_budget
        self.status = ""

    # -- the main loop (docs/omegaprm.md, "The algorithm") -------------------------------------------------

    def run(self) -> Generator[list[Request], list[list[Sample]], OmegaPRMResult]:
        config = self.config
        if config.prefilter_samples:
            # Paper screening: keep the question only if 0 < #correct < N (docs/omegaprm.md, "Screening").
            request = self._request("omegaprm/prefilter", "", config.prefilter_samples)
            samples = yield from self._ask(request)
            self.prefilter = [self._grade("", s) for s in samples]
            correct = sum(r.correct is True for r in self.prefilter)
            self.counters.prefilter_correct = correct
            if correct == len(samples):
                return self._result("prefiltered_all_correct")
            if correct == 0:
                return self._result("prefiltered_all_wrong")

        root = yield from self._estimate("", parent=None, segmentation=None, span=(0, 0))
        assert root is not None  # the config guarantees the budget covers pre-filter + root
        if config.cut == "token":
            self.min_segment = self._min_segment_tokens(root)
        if config.rollout_budget == "auto":
            self.budget = self._auto_budget(root)
        if root.mc in (0.0, 1.0):
            # No candidate can exist; end instead of resampling (MENG "root_no_candidates").
            return self._result("root_all_correct" if root.mc == 1.0 else "root_all_wrong")

        while True:
            if self.counters.searches >= config.search_limit:
                return self._result("search_limit")
            picked = self._select()
            if picked is None:
                return self._result("pool_exhausted")
            complete = yield from self._binary_search(*picked)
            if not complete:
                return self._result("rollout_budget")

    def _select(self) -> tuple[_Node, int] | None:
        """argmax Q(s,r) + U(s) over the pool; ties go to the earlier candidate (docs/omegaprm.md, "Selection")."""
        if not self.pool:
            return None
        total_visits = sum(node.visits for node in self.nodes)
        best: tuple[float, int, float, float] | None = None
        for position, (node_id, index) in enumerate(self.pool):
            node = self.nodes[node_id]
            q, u = self._q(node, node.rollouts[index]), self._u(node, total_visits)
            if best is None or q + u > best[0]:
                best = (q + u, position, q, u)
        assert best is not None
        score, position, q, u = best
        node_id, index = self.pool.pop(position)  # a selected rollout is never searched twice (openr puts it back)
        node = self.nodes[node_id]
        node.rollouts[index].selected = True
        node.visits += 1  # N(s) of the selected state only, per selection (openr counts estimates)
        self.counters.searches += 1
        self.selections.append(
            {
                "search_index": self.counters.searches - 1,
                "node_id": node_id,
                "rollout_index": index,
                "q": q,
                "u": u,
                "score": score,
                "total_visits": total_visits,
                "pool_size": len(self.pool) + 1,
                "tree_size": len(self.nodes),
                "outcome": "",
                "first_error_node_id": None,
                "probes": [],  # node ids probed by this binary search, in order (sampled or cached)
                "implied": [],  # probes decided without sampling: {"cut", "prefix", "value", "by_node_id"}
            }
        )
        return node, index

    def _q(self, node: _Node, rollout: _Rollout) -> float:
        # Q(s,r) = α^(1−MC(s))·β^(len(r)/L), len in tokens (docs/omegaprm.md, "Selection").
        c = self.config
        return c.alpha ** (1.0 - node.mc) * c.beta ** (rollout.n_tokens / c.length_scale)

    def _u(self, node: _Node, total_visits: int) -> float:
        # U(s) = c_puct·sqrt(Σ_i N(s_i))/(1 + N(s)), the sum over every state ("Selection").
        return self.config.c_puct * math.sqrt(total_visits) / (1 + node.visits)

    # -- binary search for the first error (docs/omegaprm.md, "Binary search") --------------------------------

    def _binary_search(self, state: _Node, index: int) -> Generator[list[Request], list[list[Sample]], bool]:
        rollout = state.rollouts[index]
        record = self.selections[-1]
        seg = self._segment(rollout.text)
        full = state.prefix + rollout.text
        high_node: _Node | None = self._terminal(state, rollout, seg)  # None while the upper bound is implied
        low, high = 0, seg.last
        # The deepest measured state the search went right to, and its cut: the parent of the next probe's node.
        # It trails `low` when `low` was implied (implied probes leave no node: the tree holds measurements only).
        low_node, low_cut = state, 0
        chain = [0]  # cut indices of the measured states that went right (MC > 0)
        implied: dict[int, dict[str, Any]] = {}  # cut -> how its probe was decided without sampling
        while self._splittable(low, high):
            middle = (low + high) // 2
            prefix = full[: len(state.prefix) + seg.bounds[middle]]
            node = self.cache.get(prefix)
            if node is None:
                bounds = (full[: len(state.prefix) + seg.bounds[low]], full[: len(state.prefix) + seg.bounds[high]])
                decided = self._implied(prefix, *bounds)
                if decided is not None:
                    implied[middle] = decided
                    record["implied"].append({"cut": middle, "prefix": prefix, **decided})
                    if decided["value"] == "positive":
                        self.counters.probes_implied_positive += 1
                        low = middle
                    else:
                        self.counters.probes_implied_zero += 1
                        high, high_node = middle, None
                    continue
                node = yield from self._estimate(prefix, parent=low_node, segmentation=seg, span=(low_cut, middle))
                if node is None:  # the next probe would exceed the rollout budget
                    record["outcome"] = "incomplete"
                    self.counters.searches_incomplete += 1
                    return False
            else:
                self.counters.cache_hits += 1
                self._link(low_node, node, single_step=not self._splittable(low_cut, middle))
            record["probes"].append(node.node_id)
            if node.mc > 0:  # MC = 1 goes right as well (docs/omegaprm.md, "Binary search")
                low, low_node, low_cut = middle, node, middle
                chain.append(middle)
            else:
                high, high_node = middle, node
        if high_node is not None:
            self._link(low_node, high_node, single_step=not self._splittable(low_cut, high))
            if high_node.mc > 0:
                # The "wrong" end is reachable (e.g. the same text was probed as another rollout's prefix): no error.
                record["outcome"] = "no_error"
                self.counters.searches_without_error += 1
                return True
        record["outcome"] = "first_error"
        record["first_error_node_id"] = None if high_node is None else high_node.node_id
        high_prefix = full[: len(state.prefix) + seg.bounds[high]]
        # A token-cut path's steps end at the measured states it went through; an implied lower bound is kept only
        # because it starts the first-error segment. A step-cut path has every step in between either way.
        cuts = chain + ([low] if low != low_cut else []) + [high]
        last_correct = low_node if low_cut == low else None
        self._emit_negative(state, index, seg, cuts, last_correct, high_node, high_prefix, implied)
        return True

    def _implied(self, probe: str, low_prefix: str, high_prefix: str) -> dict[str, Any] | None:
        """What the measured states imply about `probe`, which lies between the search's bounds (docs/omegaprm.md,
        "Implied probes"), or None when they imply nothing and it must be sampled.

        Positive: a state measured at MC > 0 extends the probe, on this rollout or off it, but not past the upper
        bound (some rollout reached the gold answer through the probe's text, so the probe can reach it; past the
        bound it would contradict the bound's own MC = 0). Zero: the probe extends a state measured at
        MC = 0, past the lower bound (every continuation of the probe continues that state, which reached the answer
        in none of its k rollouts: the binary search's own reading of an MC = 0 probe). Only sampled (monte_carlo)
        states are evidence: a terminal state's 0 grades its final answer, and text after a wrong answer can still
        reach the gold one. A positive is a witness and the zero an estimate, so where both apply, positive wins.
        """
        positive: _Node | None = None
        zero: _Node | None = None
        for node in self.nodes:
            if node.mc_source != "monte_carlo":
                continue
            if node.mc > 0:
                beyond = len(node.prefix) > len(high_prefix) and node.prefix.startswith(high_prefix)
                if len(node.prefix) > len(probe) and node.prefix.startswith(probe) and not beyond:
                    if positive is None or len(node.prefix) < len(positive.prefix):
                        positive = node  # the nearest witness
            elif len(low_prefix) < len(node.prefix) < len(probe) and probe.startswith(node.prefix):
                if zero is None or len(node.prefix) > len(zero.prefix):
                    zero = node  # the nearest measured zero
        if positive is not None:
            return {"value": "positive", "by_node_id": positive.node_id}
        if zero is not None:
            return {"value": "zero", "by_node_id": zero.node_id}
        return None

    def _splittable(self, low: int, high: int) -> bool:
        if high - low < 2:
            return False
        # Token cut: a segment under mean_tokens/16 tokens is not split further (MENG's reading of §4.2).
        return self.config.cut == "step" or high - low >= self.min_segment

    def _segment(self, text: str) -> _Segmentation:
        if self.config.cut == "token":
            return _Segmentation(text, self._token_bounds(text), None)
        assert self.split is not None
        steps, ends = self.split(text)
        # The last step always ends at the end of the text, so the full text is the terminal state (lossless).
        inner = sorted({e for e in ends[:-1] if 0 < e < len(text)})
        bounds = [0, *inner, len(text)]
        if len(steps) != len(bounds) - 1:
            steps = [text[a:b].strip() for a, b in pairwise(bounds)]
        return _Segmentation(text, bounds, list(steps))

    def _token_bounds(self, text: str) -> list[int]:
        assert self.token_offsets is not None
        inner = sorted({o for o in self.token_offsets(text) if 0 < o < len(text)})
        return [0, *inner, len(text)]

    def _auto_budget(self, root: _Node) -> int:
        # M = cut units of the longest solution sampled from the root; a search makes at most ~log2 M probes.
        units = max(self._segment(r.text).last for r in self.prefilter + root.rollouts)
        max_probes = probes_per_search(units, lambda n: self._splittable(0, n))
        c = self.config
        return auto_rollout_budget(c.k, c.search_limit, c.prefilter_samples, max_probes)

    def _min_segment_tokens(self, root: _Node) -> float:
        texts = [r.text for r in self.prefilter + root.rollouts]
        mean = sum(len(self._token_bounds(t)) - 1 for t in texts) / max(1, len(texts))
        return max(1.0, mean / self.config.segment_divisor)

    def _action_tokens(self, seg: _Segmentation | None, span: tuple[int, int], rollout: _Rollout | None) -> int | None:
        low, high = span
        if seg is None:
            return 0
        if self.config.cut == "token":
            return high - low
        if self.token_offsets is not None:
            return len(self._token_bounds(seg.text[seg.bounds[low] : seg.bounds[high]])) - 1
        if rollout is not None and (low, high) == (0, seg.last):
            return rollout.n_tokens  # the whole rollout: the engine counted it
        return None

    # -- states ----------------------------------------------------------------------------------------------

    def _estimate(
        self, prefix: str, parent: _Node | None, segmentation: _Segmentation | None, span: tuple[int, int]
    ) -> Generator[list[Request], list[list[Sample]], _Node | None]:
        """MC(s) = #correct / k over k fresh rollouts; None when k more completions would exceed the budget."""
        k = self.config.k
        if not self._affordable(k):
            return None  # checked before every request, so the budget is never overshot (openr checks per loop)
        key = prefix_key(prefix, "omegaprm/")
        request = self._request(key, prefix, k)
        samples = yield from self._ask(request)
        rollouts = [self._grade(prefix, sample) for sample in samples]
        n_correct = sum(r.correct is True for r in rollouts)
        node = self._new_node(prefix, parent, segmentation, span, mc=n_correct / k, mc_source="monte_carlo")
        node.n_correct, node.n_rollouts, node.rollouts = n_correct, k, rollouts
        node.request_key, node.seed = key, request.sampling.seed
        self.counters.estimates += 1
        if 0 < n_correct < k:
            # Probe rollouts join the pool when 0 < MC < 1 (docs/omegaprm.md, "Pool").
            self.pool.extend((node.node_id, i) for i, r in enumerate(rollouts) if r.searchable())
        return node

    def _terminal(self, state: _Node, rollout: _Rollout, seg: _Segmentation) -> _Node:
        """The full wrong solution: an absorbing state with MC = 0 and no rollouts (docs/omegaprm.md, "Binary search")."""
        prefix = state.prefix + rollout.text
        node = self.cache.get(prefix)
        if node is not None:
            self._link(state, node, single_step=not self._splittable(0, seg.last))
            return node
        node = self._new_node(prefix, state, seg, (0, seg.last), mc=0.0, mc_source="terminal_answer", rollout=rollout)
        node.final_answer = rollout.extracted
        self.counters.terminal_states += 1
        return node

    def _new_node(
        self,
        prefix: str,
        parent: _Node | None,
        seg: _Segmentation | None,
        span: tuple[int, int],
        *,
        mc: float,
        mc_source: str,
        rollout: _Rollout | None = None,
    ) -> _Node:
        steps: list[str] = []
        step_ends: list[int] = []
        single_step = False
        if parent is not None and seg is not None:
            low, high = span
            base = len(parent.prefix) - seg.bounds[low]  # seg offsets are relative to the selected state's prefix
            steps = parent.steps + seg.pieces([low, high])
            step_ends = parent.step_ends + [base + e for e in seg.ends([low, high])]
            single_step = not self._splittable(low, high)
        node = _Node(
            node_id=len(self.nodes),
            prefix=prefix,
            parent_id=None if parent is None else parent.node_id,
            action=prefix[len(parent.prefix) :] if parent is not None else "",
            action_tokens=self._action_tokens(seg, span, rollout),
            single_step=single_step,
            steps=steps,
            step_ends=step_ends,
            mc=mc,
            mc_source=mc_source,
        )
        if parent is not None:
            node.edges.append({"parent_id": parent.node_id, "single_step": single_step})
        self.nodes.append(node)
        self.cache[prefix] = node
        return node

    def _link(self, parent: _Node, child: _Node, single_step: bool) -> None:
        """A second way into a cached state makes the tree a DAG (MENG); the first parent stays `parent_id`."""
        if all(edge["parent_id"] != parent.node_id for edge in child.edges):
            child.edges.append({"parent_id": parent.node_id, "single_step": single_step})

    # -- requests and grading --------------------------------------------------------------------------------

    def _affordable(self, n: int) -> bool:
        return self.budget is None or self.counters.completions + n <= self.budget

    def _request(self, key: str, prefix: str, n: int) -> Request:
        seed = derive_seed(self.run_seed, self.problem.problem_id, key)  # one seed per request (docs/design.md §5)
        return Request(prompt=self.prompt + prefix, n=n, sampling=replace(self.config.sampling, seed=seed), key=key)

    def _ask(self, request: Request) -> Generator[list[Request], list[list[Sample]], list[Sample]]:
        answer = yield [request]
        if len(answer) != 1 or len(answer[0]) != request.n:
            raise ValueError(f"expected 1 list of {request.n} samples for {request.key}, got {len(answer)} lists")
        samples = list(answer[0])
        self.counters.requests += 1
        self.counters.completions += len(samples)
        self.counters.generated_tokens += sum(s.n_tokens for s in samples)
        return samples

    def _grade(self, prefix: str, sample: Sample) -> _Rollout:
        truncated = sample.finish_reason == "length"
        if truncated and self.config.truncation_policy == "error":
            raise TruncatedGenerationError(
                f"{self.problem.problem_id}: a rollout hit max_tokens={self.config.sampling.max_tokens}"
            )
        verdict = self.grade(prefix + sample.text, sample.finish_reason)
        correct, reason = verdict.correct, verdict.reason
        if truncated and self.config.truncation_policy == "wrong":
            correct, reason = False, "truncated"  # counted wrong, the denominator stays k
        return _Rollout(
            text=sample.text,
            finish_reason=sample.finish_reason,
            n_tokens=sample.n_tokens,
            seed=sample.seed,
            correct=correct,
            extracted=verdict.extracted,
            reason=reason,
        )

    # -- output ----------------------------------------------------------------------------------------------

    def _measured(self, prefix: str) -> tuple[float | None, int | None, int | None, int | None]:
        node = self.cache.get(prefix)
        if node is None:
            return None, None, None, None
        if node.mc_source == "terminal_answer":
            return node.mc, 0, 1, node.node_id  # graded by its own answer, as annotators.mc does for the last step
        return node.mc, node.n_correct, node.n_rollouts, node.node_id

    def _emit_negative(
        self,
        state: _Node,
        index: int,
        seg: _Segmentation,
        cuts: list[int],
        low: _Node | None,
        high: _Node | None,
        high_prefix: str,
        implied: dict[int, dict[str, Any]],
    ) -> None:
        """The first-error path; `low`/`high` are the measured states around the error, None where the search's
        bound there was implied (its step then has no MC value; `meta.implied_steps` says what implied it)."""
        rollout = state.rollouts[index]
        steps = state.steps + seg.pieces(cuts)
        key = tuple(steps)
        if key in self.paths:  # another search found the same first error: one row, counted
            self.paths[key]["meta"]["searches"] += 1
            return
        ends = seg.ends(cuts)
        step_ends = state.step_ends + [len(state.prefix) + e for e in ends]
        implied_steps = [
            {"step_index": len(state.steps) + ends.index(seg.bounds[cut]), **implied[cut]}
            for cut in cuts
            if cut in implied
        ]
        terminal = high is not None and high.mc_source == "terminal_answer"
        labels = [True] * (len(steps) - 1) + [False]  # every step before the first error is True
        self.paths[key] = path_row(
            self.problem,
            steps,
            [self._measured(high_prefix[:end]) for end in step_ends],
            labels,
            {
                "truncated_after_first_error": not terminal,  # steps after the first error were dropped
                "is_terminal": terminal,
                "final_answer": high.final_answer if terminal and high is not None else None,
                "outcome_correct": False if terminal else None,
                "meta": {
                    "kind": "first_error",
                    "searches": 1,
                    "search_index": self.selections[-1]["search_index"],
                    "selected_node_id": state.node_id,
                    "rollout_index": index,
                    "rollout_seed": rollout.seed,
                    "last_correct_node_id": None if low is None else low.node_id,
                    "first_error_node_id": None if high is None else high.node_id,
                    "implied_steps": implied_steps,
                    "cut": self.config.cut,
                },
            },
        )

    def _positive_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for node in self.nodes:
            if node.mc_source != "monte_carlo":
                continue
            for index, rollout in enumerate(node.rollouts):
                full = node.prefix + rollout.text
                if rollout.correct is not True or rollout.finish_reason != "stop" or full in seen:
                    continue
                seen.add(full)
                if self.config.cut == "step":
                    seg = self._segment(rollout.text)
                    cuts = list(range(seg.last + 1))
                else:  # no step boundaries inside an unsearched rollout: its text is one step
                    seg, cuts = _Segmentation(rollout.text, [0, len(rollout.text)], None), [0, 1]
                steps = node.steps + seg.pieces(cuts)
                step_ends = node.step_ends + [len(node.prefix) + e for e in seg.ends(cuts)]
                row = path_row(
                    self.problem,
                    steps,
                    [self._measured(full[:end]) for end in step_ends],
                    [True] * len(steps),
                    {
                        "truncated_after_first_error": False,
                        "is_terminal": True,
                        "final_answer": rollout.extracted,
                        "outcome_correct": True,
                        "meta": {
                            "kind": "correct_rollout",
                            "node_id": node.node_id,
                            "rollout_index": index,
                            "rollout_seed": rollout.seed,
                        },
                    },
                )
                if any(mc == 0.0 for mc in row["mc_values"][:-1]):
                    self.counters.positive_paths_contradicted += 1
                    continue
                # The correct full solution is graded by its answer (1 of 1), never an invented MC.
                row["mc_values"][-1], row["n_correct"][-1], row["n_rollouts"][-1] = 1.0, 1, 1
                rows.append(row)
        return rows

    def _result(self, status: str) -> OmegaPRMResult:
        self.status = status
        paths = list(self.paths.values())
        if self.config.positive_paths:
            paths += self._positive_rows()
        return OmegaPRMResult(
            problem_id=self.problem.problem_id,
            status=status,
            counters=self.counters,
            root_mc=self.nodes[0].mc if self.nodes else None,
            min_segment_tokens=self.min_segment if self.config.cut == "token" and self.nodes else None,
            rollout_budget=self.budget,
            nodes=[node_row(self.problem.problem_id, node) for node in self.nodes],
            paths=paths,
            selections=self.selections,
            prefilter=[rollout_row(r) for r in self.prefilter],
        )
