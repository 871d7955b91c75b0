"""The one rounding rule of reported figures (`annotators.rounding.round_figure`): the report, comparisons, benches."""

from __future__ import annotations

import math

import numpy as np

from annotators.rounding import round_figure


def test_floats_round_nan_becomes_null_and_other_values_pass_through() -> None:
    assert round_figure(1 / 3) == 0.3333
    assert round_figure(2 / 3, 2) == 0.67
    assert round_figure(math.nan) is None
    assert round_figure(None) is None
    assert round_figure(7) == 7 and type(round_figure(7)) is int  # counts stay integers
    value = round_figure(np.float64(0.123456))
    assert value == 0.1235 and type(value) is float  # NumPy floats come back as Python floats
