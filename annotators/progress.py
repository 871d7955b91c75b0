"""Progress labels from MC values: PAV advantages and GenPRM relative progress (docs/labellers.md §5, §6.1).

Both compare a step's MC value with the value of the state before it. Step 0 is compared with ``root_mc``, the
question-level pass rate; the last step's value is its answer's correctness, which the labelled path already
stores as its last ``mc_values`` entry (1.0 or 0.0). Unmeasured steps (None MC) give None labels for the steps
that need them; nothing is interpolated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["pav_advantages", "pav_value", "rpe_labels"]

_TOLERANCE = 1e-12  # MC values are k/n fractions; keep 0.6/0.75 >= 0.8 true despite float rounding


def _check_mc(value: float | None, what: str) -> None:
    if value is not None and not (0.0 <= value <= 1.0):
        raise ValueError(f"{what} must be in [0, 1] or None, got {value}")


def pav_value(mc: float | None, k: int) -> float | None:
    """The value under the Best-of-K prover, ``V_K = 1 - (1 - MC)^K`` (Setlur et al., arXiv 2410.08146; §5)."""
    if k < 1:
        raise ValueError(f"K must be >= 1, got {k}")
    _check_mc(mc, "mc")
    return None if mc is None else 1.0 - (1.0 - mc) ** k


def pav_advantages(mc_values: Sequence[float | None], root_mc: float | None, k: int) -> list[float | None]:
    """PAV per-step advantages ``A_t = V_K(MC_t) - V_K(MC_{t-1})`` with ``MC_{-1} = root_mc`` (§5).

    None where either value is unmeasured.
    """
    _check_mc(root_mc, "root_mc")
    for value in mc_values:
        _check_mc(value, "mc value")
    values = [pav_value(root_mc, k)] + [pav_value(mc, k) for mc in mc_values]
    return [
        None if before is None or after is None else after - before
        for before, after in zip(values[:-1], values[1:], strict=True)
    ]


def rpe_labels(mc_values: Sequence[float | None], root_mc: float | None, epsilon: float = 0.8) -> list[bool | None]:
    """GenPRM relative progress labels: ``P_t = MC_t / MC_{t-1} >= epsilon`` (arXiv 2504.00891, §6.1).

    ``MC_{-1} = root_mc``. When ``MC_{t-1} = 0`` the ratio is undefined: the label is True iff ``MC_t > 0``
    (leaving a dead state is infinite relative progress; staying dead is none). None where either is unmeasured.
    epsilon = 0.8 is GenPRM's best criterion (Table 3).
    """
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be a positive number, got {epsilon}")
    _check_mc(root_mc, "root_mc")
    for value in mc_values:
        _check_mc(value, "mc value")
    before_values = [root_mc, *mc_values[:-1]]
    labels: list[bool | None] = []
    for before, current in zip(before_values, mc_values, strict=True):
        if before is None or current is None:
            labels.append(None)
        elif before == 0:
            labels.append(current > 0)
        else:
            labels.append(current / before >= epsilon - _TOLERANCE)
    return labels
