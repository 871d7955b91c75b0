"""How reported figures are rounded: one rule for every JSON summary (the run report, comparisons, benchmarks)."""

from __future__ import annotations

import math
from typing import Any


def round_figure(value: Any, digits: int = 4) -> Any:
    """A float rounded to `digits` (NaN becomes None, a NumPy float a Python one); any other value as it is."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(float(value), digits)
    return value
