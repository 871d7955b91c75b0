"""One problem's evidence: what the search produced, then the judge's votes and the verifiers' verdicts on its paths.

Evidence is everything expensive or external a label is computed from (docs/design.md §1); labels are not
evidence: `annotators.labelling.label_rows` derives them, purely, which is what a relabel from stored evidence
relies on. The stages fill one `ProblemEvidence` in turn: search (`search`), judge (`critiques`), verify
(`verdicts`); label reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from annotators.judge import JudgeVote
from annotators.mc import McResult
from annotators.omegaprm import OmegaPRMResult
from annotators.verifiers.base import StepVerdict
from schemas.records import Problem, path_id


@dataclass(frozen=True)
class PathSteps:
    """A path to label: its id (the labelled row's `id`) and its steps."""

    id: str
    steps: list[str]


@dataclass
class ProblemEvidence:
    """The evidence of one problem, filled stage by stage."""

    problem: Problem
    search: McResult | OmegaPRMResult
    critiques: dict[str, JudgeVote] = field(default_factory=dict)  # by path id
    verdicts: dict[str, dict[str, list[StepVerdict]]] = field(default_factory=dict)  # annotator -> path id -> steps

    @property
    def method(self) -> str:
        return "omegaprm" if isinstance(self.search, OmegaPRMResult) else "mc"

    def paths(self) -> list[PathSteps]:
        """The paths the label stage will label, in its order: MC's solutions with steps (none unless the search
        went on to estimate them), or the paths OmegaPRM's binary search located."""
        if isinstance(self.search, OmegaPRMResult):
            return [PathSteps(row["id"], list(row["completions"])) for row in self.search.paths]
        if self.search.status != "ok":
            return []
        pid = self.problem.problem_id
        return [
            PathSteps(path_id(f"{pid}#{s.solution_index}", list(s.steps)), list(s.steps))
            for s in self.search.solutions
            if s.steps
        ]
