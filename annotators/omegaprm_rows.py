"""OmegaPRM's search as table rows: the nodes of its graph (`schemas.tables.OMEGAPRM_NODES`), its labelled paths
(`schemas.tables.PATHS` columns) and the dead-letter reason of a question that yields no path.

Pure row building: the search (`annotators.omegaprm`) decides which paths exist and measures their prefixes; this
module only lays what it found out as rows.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from schemas.records import Problem, path_id
from schemas.tables import OMEGAPRM_NODES, OMEGAPRM_ROLLOUT

if TYPE_CHECKING:
    from annotators.omegaprm import OmegaPRMResult, _Node, _Rollout

LABEL_POLICY = "mc>0"  # OmegaPRM's hard label: a prefix that can still reach the gold answer

# What the search measured for the prefix through one step: (mc, n_correct, n_rollouts, node_id), all None when
# that prefix was never measured (docs/omegaprm.md, "Output").
Measured = tuple[float | None, int | None, int | None, int | None]


def no_path_reason(root_mc: float | None) -> str:
    """Why a question left OmegaPRM without a labelled path, from its root estimate alone, so that a fresh run and
    a relabel from the stored tree give the same dead letter. No colon: reasons are grouped by the text before it."""
    if root_mc is None:
        return "omegaprm labelled no path (no root estimate within the rollout budget)"
    if root_mc == 0.0:
        return "omegaprm labelled no path (every root rollout was wrong, so no correct prefix to search from)"
    if root_mc == 1.0:
        return "omegaprm labelled no path (every root rollout was right and positive_paths is off)"
    return "omegaprm labelled no path (no search located a first error)"


def nodes_to_rows(result: OmegaPRMResult) -> list[dict[str, Any]]:
    """The rows of `OMEGAPRM_NODES` for one result, in node-id order."""
    return [{name: node[name] for name in OMEGAPRM_NODES.names} for node in result.nodes]


def path_row(
    problem: Problem, steps: list[str], measured: list[Measured], labels: list[bool], extra: dict[str, Any]
) -> dict[str, Any]:
    """One labelled path: `measured` holds what the search knows of the prefix through each step; `extra` the
    columns only the caller knows (terminal or not, final answer, ...) and the path's `meta`."""
    extra = dict(extra)
    meta = extra.pop("meta")
    first_error = next((i for i, ok in enumerate(labels) if not ok), -1)
    return {
        "id": path_id(problem.problem_id, steps),
        "problem_id": problem.problem_id,
        "source": problem.source,
        "search": "omegaprm",
        "prompt": problem.question,
        "completions": steps,
        "labels": labels,
        "mc_values": [m[0] for m in measured],
        "n_correct": [m[1] for m in measured],
        "n_rollouts": [m[2] for m in measured],
        "label_policy": LABEL_POLICY,
        "first_error_index": first_error,
        "gold_answer": problem.answer,
        **extra,
        "meta": {"node_ids": [m[3] for m in measured], **meta},
    }


def node_row(problem_id: str, node: _Node) -> dict[str, Any]:
    """One state of the search graph as an `OMEGAPRM_NODES` row."""
    return {
        "problem_id": problem_id,
        "node_id": node.node_id,
        "parent_id": node.parent_id,
        "edges": [dict(edge) for edge in node.edges],
        "prefix": node.prefix,
        "action": node.action,
        "action_tokens": node.action_tokens,
        "single_step": node.single_step,
        "steps": list(node.steps),
        "step_ends": list(node.step_ends),
        "mc": node.mc,
        "mc_source": node.mc_source,
        "n_correct": node.n_correct,
        "n_rollouts": node.n_rollouts,
        "visits": node.visits,
        "final_answer": node.final_answer,
        "request_key": node.request_key,
        "seed": node.seed,
        "rollouts": [rollout_row(r) for r in node.rollouts],
    }


def rollout_row(rollout: _Rollout) -> dict[str, Any]:
    """One graded rollout as an `OMEGAPRM_ROLLOUT` struct (a node's rollouts, the pre-filter's samples)."""
    row = asdict(rollout)
    row["verdict_reason"] = row.pop("reason")
    return {name: row[name] for name in OMEGAPRM_ROLLOUT.names}
