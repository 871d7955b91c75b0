"""HRM hierarchical node compression on labelled paths (docs/labellers.md §4; FoVer step merging, §2.1).

HRM (arXiv 2503.13551, ``split_node``) merges a parent's step into its child, so the merged node's prefix is the
child's prefix: its soft label (leaf fraction / MC) is exactly the child's. FoVer (``randomly_merge_steps.py``)
merges adjacent steps with the binary label = AND of the two. On a labelled path this becomes: walk the steps,
merge the pair ``(i, i+1)`` with probability ``p`` and continue after the pair, so merges never overlap.

The result is a NEW row (the caller keeps the original): merged steps are joined with ``joiner``; the hard label
is the AND of the merged labels (None-aware: any False gives False, else any None gives None); ``mc_values``,
``n_correct``, ``n_rollouts`` (and any other list column with one entry per step) are the later step's,
``<name>_labels`` are ANDed like ``labels``, ``<name>_reasons`` are joined; ``first_error_index`` is recomputed. Provenance:
``id`` = ``<original id>/hnc``, ``meta`` gets ``"merged": [[i, i+1], ...]`` (original step indices),
``"derived_from"`` (the original id) and ``"augmenter": "hnc"``; ``source`` is kept so per-source reports
count the row with its origin. The coin for pair i is ``blake2b(seed, row id, i)``: no global random state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from annotators.balance import row_key
from annotators.consensus import update_meta

__all__ = ["and_labels", "compress", "merge_pairs"]


def and_labels(labels: Sequence[bool | None]) -> bool | None:
    """None-aware AND: False if any label is False, else None if any is None, else True."""
    if any(label is False for label in labels):
        return False
    if any(label is None for label in labels):
        return None
    return True


def _coin(seed: int, key: str, index: int) -> float:
    """A uniform number in [0, 1) from (seed, row key, pair index)."""
    digest = hashlib.blake2b(f"{seed}\x1f{key}\x1f{index}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def merge_pairs(n_steps: int, probability: float, seed: int, key: str) -> list[list[int]]:
    """The non-overlapping pairs ``[i, i+1]`` to merge, walking left to right; deterministic given the inputs."""
    pairs: list[list[int]] = []
    index = 0
    while index + 1 < n_steps:
        if _coin(seed, key, index) < probability:
            pairs.append([index, index + 1])
            index += 2
        else:
            index += 1
    return pairs


def _merge_column(values: Sequence[Any], groups: list[list[int]], combine: Callable[[list[Any]], Any]) -> list[Any]:
    return [combine([values[i] for i in group]) for group in groups]


def compress(row: Mapping[str, Any], probability: float, seed: int, *, joiner: str = "\n\n") -> list[dict[str, Any]]:
    """Zero or one new row with consecutive steps merged (HRM HNC); see the module docstring for the rules."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"merge probability must be in [0, 1], got {probability}")
    steps = list(row.get("completions") or [])
    key = row_key(row)
    pairs = merge_pairs(len(steps), probability, seed, key)
    if not pairs:
        return []
    starts = {pair[0] for pair in pairs}
    groups: list[list[int]] = []
    index = 0
    while index < len(steps):
        groups.append([index, index + 1] if index in starts else [index])
        index += len(groups[-1])

    out = dict(row)
    out["completions"] = _merge_column(steps, groups, joiner.join)
    for name, value in row.items():
        if not isinstance(value, list) or len(value) != len(steps) or name == "completions":
            continue
        if name == "labels" or name.endswith("_labels"):
            out[name] = _merge_column(value, groups, and_labels)
        elif name.endswith("_reasons"):
            out[name] = _merge_column(value, groups, lambda parts: "; ".join(str(p) for p in parts if p))
        else:  # mc_values, n_correct, n_rollouts and any other per-step list: the child's (HRM §4)
            out[name] = _merge_column(value, groups, lambda parts: parts[-1])
    labels = out.get("labels")
    if labels is not None:
        # -1 when no label is False (PATHS convention); None labels do not count as errors here
        out["first_error_index"] = next((i for i, label in enumerate(labels) if label is False), -1)
    out["id"] = f"{key}/hnc"
    return [update_meta(out, {"merged": pairs, "derived_from": key, "augmenter": "hnc"})]
