"""Replay buffer: episode-aware segments, padding after terminations, relabelling and persistence."""

import numpy as np
import pytest

from rlhf.replay import ReplayBuffer


def fill(rb, episodes):
    """episodes: list of (length, terminated): True ends it by termination, False by a time limit (truncated), None
    leaves it running. obs[0] = global transition index; true reward = 1 per step."""
    i = 0
    for ep, (length, terminated) in enumerate(episodes):
        for t in range(length):
            last = t == length - 1
            rb.add(
                np.full(3, i),
                np.full(2, i),
                np.full(3, i + 1),
                1.0,
                last and terminated is True,
                last and terminated is False,
                ep,
                t,
                np.full(4, i),
            )
            i += 1
    return rb


def test_segments_never_cross_episodes_and_short_terminated_episodes_are_padded(rng):
    rb = fill(ReplayBuffer(100, 3, 2, 4), [(10, True), (30, False), (5, True), (4, None)])
    starts, last = rb.segment_starts(8)
    order = rb.chronological()
    # episode 0 (10 steps, terminated): starts 0..2 full; episode 1 (30): starts 10..32; episode 2 (5 steps,
    # terminated): only its first step, padded; episode 3 (4 steps, in progress): none
    assert starts.tolist() == [0, 1, 2, *range(10, 33), 40]
    seg = rb.segments(starts, last, 8)
    padded = seg[len(starts) - 1]
    assert padded.mask.tolist() == [True] * 5 + [False] * 3
    assert padded.true_rewards.tolist() == [1.0] * 5 + [0.0] * 3  # padding counts zero reward
    assert (padded.obs[5:, 0] == 44).all()  # frozen last frame
    assert padded.physics_states[-1, 0] == 44
    full = seg[: len(starts) - 1]
    assert full.mask.all()
    ep_of = lambda x: np.searchsorted([10, 40, 45, 49], x, side="right")  # noqa: E731
    assert (ep_of(full.obs[:, 0, 0]) == ep_of(full.obs[:, -1, 0])).all()
    assert order.tolist() == list(range(49))


def test_episodes_cut_by_a_time_limit_shorter_than_the_segment_are_padded_whole():
    """A task whose episodes are all shorter than H (Pusher's 100 steps with H = 128): each segment is one whole
    episode, padded with its last step; an episode still running gives none yet (it may still reach H)."""
    rb = fill(ReplayBuffer(100, 3, 2, 4), [(6, False), (6, False), (3, None)])
    starts, last = rb.segment_starts(8)
    assert starts.tolist() == [0, 6] and last.tolist() == [5, 11]
    seg = rb.segments(starts, last, 8)
    assert seg.mask.sum(1).tolist() == [6, 6] and (seg.obs[1, 6:, 0] == 11).all()


def test_wrapped_buffer_ignores_partly_overwritten_episode_starts():
    rb = fill(ReplayBuffer(20, 3, 2, 4), [(6, True), (6, True), (15, True)])  # 27 transitions in 20 slots
    starts, last = rb.segment_starts(8)
    seg = rb.segments(starts, last, 8)
    # the oldest kept transitions (7..11) belong to episode 1 whose first step was overwritten: no padded start
    assert seg.obs[:, 0, 0].min() >= 12
    assert np.all(np.diff(seg.obs[..., 0], axis=1) == 1)


def test_relabel_touches_only_the_learned_reward(rng):
    rb = fill(ReplayBuffer(50, 3, 2, 4), [(20, True), (10, False)])
    before = {k: v.copy() for k, v in rb.state_dict().items() if k not in ("member_rewards", "counters")}
    rb.relabel(lambda o, a: o[:, :1] * 2, chunk_size=7)
    np.testing.assert_array_equal(rb.member_rewards[:30, 0], np.arange(30) * 2)
    after = rb.state_dict()
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v)


def test_pending_transitions_are_not_sampled_until_relabelled(rng):
    rb = fill(ReplayBuffer(50, 3, 2, 4), [(20, True)])
    rb.relabel(lambda o, a: np.ones((len(o), 1)))
    fill_more = [(5, False)]
    for t in range(5):
        rb.add(np.full(3, 100 + t), np.zeros(2), np.zeros(3), 0.0, False, t == 4, 9, t, np.zeros(4))
    assert rb.pending == 5 and len(fill_more) == 1
    assert (rb.sample(500, rng)["obs"][:, 0] < 100).all()
    rb.relabel_pending(lambda o, a: np.full((len(o), 1), 7.0))
    assert rb.pending == 0 and (rb.member_rewards[20:25] == 7.0).all() and (rb.member_rewards[:20] == 1.0).all()
    assert (rb.sample(2000, rng)["obs"][:, 0] >= 100).any()


def test_state_dict_round_trip_keeps_order_after_wrapping():
    rb = fill(ReplayBuffer(20, 3, 2, 4), [(27, False)])
    state = rb.state_dict()
    assert state["obs"][:, 0].tolist() == list(range(7, 27))
    rb2 = ReplayBuffer(30, 3, 2, 4)
    rb2.load_state_dict(state)
    assert rb2.size == 20 and rb2.obs[:20, 0].tolist() == list(range(7, 27))
    with pytest.raises(ValueError, match="shape"):
        ReplayBuffer(30, 5, 2, 4).load_state_dict(state)


def test_sampled_rewards_are_the_member_mean_and_std(rng):
    rb = fill(ReplayBuffer(50, 3, 2, 4, reward_members=3), [(20, True)])
    rb.relabel(lambda o, a: np.stack([o[:, 0], o[:, 0] + 1, o[:, 0] + 2], 1))
    batch = rb.sample(64, rng)
    np.testing.assert_allclose(batch["reward_mean"], batch["obs"][:, 0] + 1)
    np.testing.assert_allclose(batch["reward_std"], np.sqrt(2 / 3), rtol=1e-6)
    true, members = rb.recent(5)
    assert true.shape == (5,) and members[:, 0].tolist() == [15, 16, 17, 18, 19]
