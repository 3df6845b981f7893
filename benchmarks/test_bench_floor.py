"""The scheduling bound `bench_floor` charges a sweep (run with `pytest benchmarks`)."""

from __future__ import annotations

import pytest

from benchmarks.bench_floor import makespan_floor


@pytest.mark.parametrize(
    "costs,cores,want",
    [
        ([1.0] * 9, 2, 5.0),  # nine equal trials on two cores: five rounds
        ([1.0] * 8, 2, 4.0),
        ([10.0, 1.0, 1.0], 2, 10.0),  # one long trial
        ([3.0, 1.0, 1.0, 1.0], 2, 3.0),
        ([2.0, 2.0, 2.0, 1.0, 1.0], 2, 4.0),  # three on one core: the three cheapest sum to 4
        ([], 2, 0.0),
    ],
)
def test_makespan_floor(costs, cores, want):
    assert makespan_floor(costs, cores) == pytest.approx(want)
