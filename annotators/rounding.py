"""How reported figures are rounded: one rule for every JSON summary (the run report, comparisons, benchmarks)."""

from __future__ import annotations

import math
from typing import Any


def round_figure(value: Any, digits: int = 4) -> Any:
    """A float rounded to `digits` (NaN becomes None, a NumPy float a Python one); any other value as it is."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(float(value), digits)
    return value


def round_scores(scores: dict[str, Any]) -> dict[str, Any]:
    """A flat table of scores with its floats rounded to 4 digits; NaN kept (it means "undefined" in a score)."""
    return {k: (round(v, 4) if isinstance(v, float) and not math.isnan(v) else v) for k, v in scores.items()}
