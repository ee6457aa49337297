import numpy as np
import pytest

from rlhf.schedule import session_steps


@pytest.mark.parametrize("schedule", ["linear", "exponential"])
@pytest.mark.parametrize("n", [1, 7, 70])
def test_counts_bounds_and_monotonicity(schedule, n):
    steps = session_steps(schedule, 10_000, 1_000_000, n, 0.1)
    assert len(steps) == n
    assert steps[0] == 10_000 and steps[-1] < 1_000_000
    assert np.all(np.diff(steps) > 0)


def test_linear_is_evenly_spaced():
    np.testing.assert_array_equal(session_steps("linear", 100, 1100, 5), [100, 300, 500, 700, 900])


def test_exponential_gaps_grow_by_e_lambda():
    steps = session_steps("exponential", 0, 10_000_000, 10, 0.5)
    gaps = np.diff(steps).astype(float)
    np.testing.assert_allclose(gaps[1:] / gaps[:-1], np.exp(0.5), rtol=1e-4)


def test_dense_sessions_stay_distinct_and_too_many_is_an_error():
    steps = session_steps("exponential", 0, 12, 12, 2.0)
    np.testing.assert_array_equal(steps, np.arange(12))
    with pytest.raises(ValueError, match="do not fit"):
        session_steps("linear", 0, 5, 6)
    assert len(session_steps("linear", 0, 5, 0)) == 0
