"""The B-Pref simulated teacher against answers known in closed form."""

import numpy as np
import pytest

from rlhf.teacher import PRESETS, SimulatedTeacher


def rewards(*returns, length=4):
    """Segments whose per-step reward is constant and sums to the given return."""
    return np.repeat(np.asarray(returns, float)[:, None] / length, length, axis=1)


def test_oracle_prefers_the_higher_return(rng):
    teacher = SimulatedTeacher.from_preset("oracle", rng)
    labels = teacher.label(rewards(1.0, 5.0, 3.0), rewards(2.0, 4.0, 3.0))
    np.testing.assert_array_equal(labels, [1.0, 0.0, 0.5])  # P(B > A): B better, A better, a tie


def test_epsilon_one_always_flips(rng):
    teacher = SimulatedTeacher(rng=rng, epsilon=1.0)
    labels = teacher.label(rewards(1.0, 5.0), rewards(2.0, 4.0))
    np.testing.assert_array_equal(labels, [0.0, 1.0])


def test_mistake_rate_matches_epsilon(rng):
    teacher = SimulatedTeacher(rng=rng, epsilon=0.1)
    n = 20_000
    labels = teacher.label(rewards(*np.zeros(n)), rewards(*np.ones(n)))
    assert abs((labels == 0.0).mean() - 0.1) < 0.01


def test_large_beta_picks_the_higher_return_and_small_beta_is_a_coin(rng):
    n = 4000
    a, b = rewards(*np.zeros(n)), rewards(*np.ones(n))
    assert SimulatedTeacher(rng=rng, beta=1e6).label(a, b).mean() == 1.0
    # beta = 0: sigma(0) = 1/2, a fair coin whatever the returns
    assert abs(SimulatedTeacher(rng=rng, beta=0.0).label(a, b).mean() - 0.5) < 0.03
    # beta = 1, return gap 1: P(B) = sigma(1) = 0.731
    assert abs(SimulatedTeacher(rng=rng, beta=1.0).label(a, b).mean() - 1 / (1 + np.exp(-1))) < 0.03


def test_myopic_gamma_weights_the_last_steps_most(rng):
    # A earns early, B earns late, same undiscounted return: a myopic teacher prefers B, an oracle calls it equal
    a = np.array([[1.0, 0.0, 0.0, 0.0]])
    b = np.array([[0.0, 0.0, 0.0, 1.0]])
    assert SimulatedTeacher(rng=rng, gamma=0.9).label(a, b)[0] == 1.0
    assert SimulatedTeacher(rng=rng, gamma=1.0).label(a, b)[0] == 0.5
    # R'_A = 0.9^3 * 2 = 1.458 > R'_B = 1.4: the earlier, larger reward survives the discount
    assert SimulatedTeacher(rng=rng, gamma=0.9).label(np.array([[2.0, 0, 0, 0]]), np.array([[0, 0, 0, 1.4]]))[0] == 0.0


def test_skip_and_equal_thresholds(rng):
    teacher = SimulatedTeacher(rng=rng, delta_skip=1.0, delta_equal=0.5)
    labels = teacher.label(rewards(0.2, 0.2, 3.0, 3.0), rewards(0.9, 5.0, 3.4, 1.0))
    assert np.isnan(labels[0])  # both below delta_skip: skipped, not a label
    np.testing.assert_array_equal(labels[1:], [1.0, 0.5, 0.0])


def test_relative_thresholds_of_the_skip_and_equal_presets(rng):
    # mean |return| of the batch = 2.5, so the presets' thresholds are 0.25
    a, b = rewards(0.1, 4.0), rewards(0.2, 5.2)
    assert np.isnan(SimulatedTeacher.from_preset("skip", rng).label(a, b)[0])
    eq = SimulatedTeacher.from_preset("equal", rng).label(rewards(1.0, 4.0), rewards(1.2, 4.0 + 0.3))
    np.testing.assert_array_equal(eq, [0.5, 1.0])


def test_presets_and_explicit_knobs(rng):
    assert set(PRESETS) == {"oracle", "stochastic", "myopic", "mistake", "skip", "equal"}
    t = SimulatedTeacher.from_preset("mistake", rng, epsilon=None, gamma=0.5)
    assert t.epsilon == 0.1 and t.gamma == 0.5  # explicitly given knobs win over the preset
    with pytest.raises(ValueError, match="preset"):
        SimulatedTeacher.from_preset("nonsense", rng)
    with pytest.raises(ValueError, match="epsilon"):
        SimulatedTeacher(rng=rng, epsilon=1.5)


def test_same_seed_same_labels():
    a, b = rewards(*np.zeros(100)), rewards(*np.full(100, 0.3))
    l1 = SimulatedTeacher(rng=np.random.default_rng(3), beta=1.0, epsilon=0.2).label(a, b)
    l2 = SimulatedTeacher(rng=np.random.default_rng(3), beta=1.0, epsilon=0.2).label(a, b)
    np.testing.assert_array_equal(l1, l2)
