"""Reward ensemble: Bradley-Terry loss in closed form, masked sums, eval-mode predictions, and learning."""

import numpy as np
import pytest
import torch

from rlhf.preferences import PreferenceDataset
from rlhf.reward_model import RewardEnsemble, bradley_terry_loss, predict_logits, predict_rewards, segment_returns
from rlhf.reward_training import RewardTrainingConfig, train_reward_ensemble
from rlhf.segments import Segments


def test_bradley_terry_loss_closed_form():
    logits = torch.tensor([0.0, 2.0, -1.0])
    labels = torch.tensor([1.0, 0.5, 0.0])
    p = torch.sigmoid(logits)
    expected = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()
    assert torch.allclose(bradley_terry_loss(logits, labels), expected)
    assert abs(float(bradley_terry_loss(torch.tensor([0.0]), torch.tensor([1.0]))) - np.log(2)) < 1e-6


def test_segment_returns_ignore_padding():
    r = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert segment_returns(r, mask).tolist() == [3.0, 3.0]


def test_predictions_run_in_eval_mode_without_dropout(rng):
    torch.manual_seed(0)
    ens = RewardEnsemble(4, 2, members=3, hidden_dim=32, hidden_layers=2, dropout=0.5)
    obs, act = rng.normal(size=(100, 4)), rng.normal(size=(100, 2))
    m1, s1 = predict_rewards(ens, obs, act)
    m2, s2 = predict_rewards(ens, obs, act)
    np.testing.assert_array_equal(m1, m2)
    assert ens.training  # prediction restores the training flag
    assert m1.shape == s1.shape == (100,) and (s1 > 0).all()


def test_logits_are_batched_over_pairs_and_members(rng):
    torch.manual_seed(0)
    ens = RewardEnsemble(4, 2, members=2, hidden_dim=8, hidden_layers=1)
    oa, aa, ob, ab = (rng.normal(size=(5, 6, d)).astype(np.float32) for d in (4, 2, 4, 2))
    mask = np.ones((5, 6), bool)
    logits = predict_logits(ens, oa, aa, mask, ob, ab, mask)
    with torch.no_grad():
        rb = ens(torch.as_tensor(ob), torch.as_tensor(ab)).sum(-1)
        ra = ens(torch.as_tensor(oa), torch.as_tensor(aa)).sum(-1)
    assert logits.shape == (2, 5)
    torch.testing.assert_close(logits, rb - ra)


def scripted_dataset(rng, n, length=10, obs_dim=4):
    """Pairs labelled by a scripted reward r(s, a) = s_0 - |a_0| (a perfectly rational teacher)."""

    def segs():
        obs = rng.normal(size=(n, length, obs_dim)).astype(np.float32)
        act = rng.uniform(-1, 1, size=(n, length, 1)).astype(np.float32)
        r = (obs[..., 0] - np.abs(act[..., 0])).astype(np.float32)
        return Segments(obs, act, r, np.ones((n, length), bool), np.zeros((n, length, 1), np.float32))

    a, b = segs(), segs()
    labels = (b.true_returns() > a.true_returns()).astype(np.float32)
    return a, b, labels


def test_ensemble_learns_a_scripted_reward_from_synthetic_labels(rng):
    torch.manual_seed(0)
    a, b, labels = scripted_dataset(rng, 400)
    data = PreferenceDataset(10, 4, 1, 1)
    data.add(a, b, labels, session=0, val_split=0.25, rng=rng)
    ens = RewardEnsemble(4, 1, members=3, hidden_dim=64, hidden_layers=2)
    opt = torch.optim.Adam(ens.parameters(), lr=1e-3)
    metrics = train_reward_ensemble(ens, opt, data, RewardTrainingConfig(epochs=30, minibatch_size=32), rng)
    assert metrics["val_accuracy"] >= 0.9, metrics
    # and it generalises to fresh pairs
    ta, tb, tl = scripted_dataset(rng, 300)
    logits = predict_logits(ens, ta.obs, ta.actions, ta.mask, tb.obs, tb.actions, tb.mask).mean(0)
    assert ((logits.numpy() > 0) == (tl > 0.5)).mean() >= 0.9


def test_batch_strategies_and_early_stop(rng):
    torch.manual_seed(0)
    a, b, labels = scripted_dataset(rng, 64)
    for strategy in ("minibatch", "batch", "full"):
        data = PreferenceDataset(10, 4, 1, 1)
        data.add(a, b, labels, 0, 0.0, rng)
        ens = RewardEnsemble(4, 1, members=2, hidden_dim=32, hidden_layers=2)
        cfg = RewardTrainingConfig(
            epochs=200, batch_strategy=strategy, minibatch_size=16, batch_size=32, early_stop_accuracy=0.95
        )
        metrics = train_reward_ensemble(ens, torch.optim.Adam(ens.parameters(), lr=3e-3), data, cfg, rng)
        assert metrics["epochs"] < 200 and metrics["train_accuracy"] >= 0.9, (strategy, metrics)


def test_preference_dataset_split_and_session_window(rng):
    a, b, labels = scripted_dataset(rng, 10)
    data = PreferenceDataset(10, 4, 1, 1)
    for s in range(3):
        data.add(a, b, labels, s, 0.2, rng)
    assert len(data) == 30 and data.is_val.sum() == 6
    data.keep_last_sessions(2)
    assert sorted(set(data.session.tolist())) == [1, 2] and len(data) == 20
    restored = PreferenceDataset(10, 4, 1, 1)
    restored.load_state_dict(data.state_dict())
    np.testing.assert_array_equal(restored.seg_b.obs, data.seg_b.obs)
    np.testing.assert_array_equal(restored.labels, data.labels)


def test_stored_preferences_that_do_not_pair_up_are_refused(rng):
    a, b, labels = scripted_dataset(rng, 10)
    data = PreferenceDataset(10, 4, 1, 1)
    data.add(a, b, labels, 0, 0.2, rng)
    state = data.state_dict()
    state["b_obs"] = state["b_obs"][:5]
    with pytest.raises(ValueError, match="do not pair up"):
        PreferenceDataset(10, 4, 1, 1).load_state_dict(state)
