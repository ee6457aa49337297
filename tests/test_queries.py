import numpy as np
import pytest
import torch

from rlhf.queries import binary_entropy, select_from_reward_cache, select_queries, select_top, selection_scores
from rlhf.replay import ReplayBuffer
from rlhf.reward_model import RewardEnsemble, predict_logits, predict_member_rewards


def test_entropy_closed_form():
    p = torch.tensor([0.0, 0.5, 1.0, 0.25])
    expected = [0.0, np.log(2), 0.0, -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))]
    np.testing.assert_allclose(binary_entropy(p).numpy(), expected, atol=1e-6)


def test_disagree_picks_the_largest_member_std():
    # columns = candidate pairs; rows = members' P(B > A)
    probs = torch.tensor([[0.5, 0.1, 0.9, 0.5], [0.5, 0.9, 0.8, 0.6], [0.5, 0.5, 0.85, 0.4]])
    np.testing.assert_allclose(selection_scores(probs, "disagree").numpy(), probs.std(0, unbiased=False).numpy())
    assert select_top(probs, 2, "disagree").tolist() == [1, 3]


def test_entropy_picks_pairs_nearest_the_decision_boundary():
    # members agree on pair 0 being a coin flip (mean 0.5) and disagree wildly on pair 1 (mean 0.5 as well);
    # pair 2 is confidently B. Entropy of the mean ranks 0 and 1 first, disagreement ranks 1 first.
    probs = torch.tensor([[0.5, 0.01, 0.95], [0.5, 0.99, 0.97], [0.5, 0.5, 0.96]])
    assert set(select_top(probs, 2, "entropy").tolist()) == {0, 1}
    assert select_top(probs, 1, "disagree").tolist() == [1]
    assert select_top(probs, 1, "entropy").tolist() != [2]


def filled_buffer(n=500, episode_len=50):
    rb = ReplayBuffer(1000, 3, 2, 4)
    for i in range(n):
        rb.add(
            np.full(3, i),
            np.zeros(2),
            np.full(3, i + 1),
            1.0,
            False,
            (i + 1) % episode_len == 0,
            i // episode_len,
            i % episode_len,
            np.zeros(4),
        )
    return rb


@pytest.mark.parametrize("strategy", ["uniform", "disagree", "entropy"])
def test_select_queries_returns_the_requested_pairs(strategy, rng):
    torch.manual_seed(0)
    rb = filled_buffer()
    ens = RewardEnsemble(3, 2, members=3, hidden_dim=16, hidden_layers=1)
    a, b = select_queries(rb, ens, num_queries=7, pool_size=70, length=10, strategy=strategy, rng=rng)
    assert len(a) == len(b) == 7 and a.obs.shape == (7, 10, 3)
    # every segment is 10 consecutive steps of one episode
    for seg in (a, b):
        assert np.all(np.diff(seg.obs[..., 0], axis=1) == 1)
        assert np.all(seg.obs[:, 0, 0] // 50 == seg.obs[:, -1, 0] // 50)


def test_disagreement_selection_beats_random_on_a_handmade_ensemble(rng):
    """Members that agree except on segments from one region: selection must ask about that region."""
    rb = filled_buffer()

    class SplitEnsemble(RewardEnsemble):
        def forward(self, obs, actions):
            disagreeing = (obs[..., 0] >= 400).float()  # states >= 400: members disagree in sign
            signs = torch.tensor([1.0, -1.0, 0.5]).view(3, *([1] * obs[..., 0].dim()))
            return signs * disagreeing

    ens = SplitEnsemble(3, 2, members=3, hidden_dim=4, hidden_layers=1)
    a, b = select_queries(rb, ens, num_queries=10, pool_size=200, length=10, strategy="disagree", rng=rng)
    involved = (a.obs[:, 0, 0] >= 400) ^ (b.obs[:, 0, 0] >= 400)
    assert involved.all()


@pytest.mark.parametrize("strategy", ["disagree", "entropy"])
def test_selection_from_the_reward_cache_equals_evaluating_the_networks(strategy):
    torch.manual_seed(0)
    rb = ReplayBuffer(1000, 3, 2, 4, reward_members=3)
    src = filled_buffer()
    rb.load_state_dict({**src.state_dict(), "member_rewards": np.zeros((500, 3), np.float32)})
    rb.obs[:500] = np.random.default_rng(1).normal(size=(500, 3))  # varied states, so members disagree
    ens = RewardEnsemble(3, 2, members=3, hidden_dim=16, hidden_layers=1)
    rb.relabel(lambda o, a: predict_member_rewards(ens, o, a))
    a, b = select_from_reward_cache(rb, 8, 200, 10, strategy, np.random.default_rng(5))
    # the same pool scored by the networks: rebuild it with the same random draws
    starts, last = rb.segment_starts(10)
    g = np.random.default_rng(5)
    pa, pb = g.integers(0, len(starts), size=200), g.integers(0, len(starts), size=200)
    pool_a, pool_b = rb.segments(starts[pa], last[pa], 10), rb.segments(starts[pb], last[pb], 10)
    logits = predict_logits(ens, pool_a.obs, pool_a.actions, pool_a.mask, pool_b.obs, pool_b.actions, pool_b.mask)
    keep = select_top(torch.sigmoid(logits), 8, strategy)
    np.testing.assert_array_equal(a.obs, pool_a.obs[keep])
    np.testing.assert_array_equal(b.obs, pool_b.obs[keep])
