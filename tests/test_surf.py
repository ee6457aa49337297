"""SURF against closed-form answers: crop lengths/offsets/masks, pseudo-label thresholds, the λ_ssl weighting."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlhf.config import SurfArgs, check_flags
from rlhf.preferences import PreferenceDataset
from rlhf.queries import select_queries
from rlhf.reward_model import RewardEnsemble
from rlhf.reward_training import RewardTrainingConfig, train_reward_ensemble
from rlhf.segments import Segments
from rlhf.surf import (
    Surf,
    SurfConfig,
    confident_pseudo_labels,
    crop_pairs,
    crop_windows,
    pseudo_label_loss,
)


@pytest.mark.parametrize(("H", "lo", "hi"), [(64, 5, 10), (16, 0, 15), (12, 3, 3), (50, 0, 0)])
def test_crop_lengths_and_offsets_stay_in_range(H, lo, hi):
    lengths, starts = crop_windows(5000, H, lo, hi, np.random.default_rng(1))
    assert lengths.min() >= H - hi and lengths.max() <= H - lo
    assert set(np.unique(lengths)) == set(range(H - hi, H - lo + 1))  # every allowed length occurs
    assert starts.shape == (5000, 2) and starts.min() >= 0
    assert (starts + lengths[:, None] <= H).all()
    if hi > lo:
        assert (starts[:, 0] != starts[:, 1]).any()  # independent offsets for A and B


def test_crop_pairs_gathers_the_window_and_keeps_padding_masked():
    B, H, lo, hi = 300, 20, 4, 9
    rng = np.random.default_rng(2)
    steps = torch.arange(H, dtype=torch.float32)
    obs = steps.view(1, 1, H, 1).expand(B, 2, H, 3).clone()  # obs[..., t, :] = t
    act = -obs[..., :2]
    last_valid = torch.as_tensor(rng.integers(0, H, size=(B, 2)))  # episodes terminated at these steps
    mask = steps.view(1, 1, H) <= last_valid[..., None]
    lengths, starts = crop_windows(B, H, lo, hi, rng)
    o, a, k = crop_pairs(obs, act, mask, lengths, starts, H - lo)
    assert o.shape == (B, 2, H - lo, 3) and a.shape == (B, 2, H - lo, 2) and k.shape == (B, 2, H - lo)
    t = torch.arange(H - lo)
    expected_step = torch.as_tensor(starts)[..., None] + t  # (B, 2, H - lo)
    inside = (t < torch.as_tensor(lengths)[:, None, None]).expand(B, 2, H - lo)
    assert torch.equal(o[..., 0][inside], expected_step[inside].float())
    assert torch.equal(a[..., 0][inside], -expected_step[inside].float())
    # valid = inside the common-length window and not padding
    assert torch.equal(k, inside & (expected_step <= last_valid[..., None]))
    # with no padding, both sides of every pair keep the same number of steps, the crop length
    full = torch.ones(B, 2, H, dtype=torch.bool)
    _, _, k_full = crop_pairs(obs, act, full, lengths, starts, H - lo)
    counts = k_full.sum(-1)
    assert torch.equal(counts[:, 0], counts[:, 1]) and torch.equal(counts[:, 0], torch.as_tensor(lengths))


def test_augment_hook_keeps_labels_and_crop_length_per_pair():
    H = 16
    surf = Surf(SurfConfig(min_offset=2, max_offset=7), H)
    surf.rng = np.random.default_rng(3)
    obs, act = torch.randn(40, 2, H, 4), torch.randn(40, 2, H, 1)
    mask = torch.ones(40, 2, H, dtype=torch.bool)
    labels = torch.tensor([0.0, 0.5, 1.0, 1.0] * 10)
    o, a, k, y = surf.augment(obs, act, mask, labels)
    assert o.shape[2] == H - 2 and torch.equal(y, labels)
    n = k.sum(-1)
    assert torch.equal(n[:, 0], n[:, 1]) and n.min() >= H - 7 and n.max() <= H - 2


def test_pseudo_labels_only_beyond_tau():
    p = torch.tensor([0.9995, 0.0004, 0.5, 0.998, 0.9991, 0.001, 0.0009, 0.999])
    labels, confident = confident_pseudo_labels(p, 0.999)
    assert confident.tolist() == [True, True, False, False, True, False, True, False]
    assert labels[confident].tolist() == [1.0, 0.0, 1.0, 0.0]


class LinearEnsemble(RewardEnsemble):
    """Member m's step reward is scale[m] · obs[..., 0] (no parameters to learn but one dummy)."""

    def __init__(self, scales):
        super().__init__(1, 1, members=len(scales), hidden_dim=2, hidden_layers=1)
        self.scales = torch.tensor(scales)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, obs, actions):
        return self.scales.view(-1, *[1] * (obs.dim() - 1)) * obs[..., 0] + self.dummy

    def member_forward(self, m, obs, actions):
        return self.scales[m] * obs[..., 0] + self.dummy


def selector(source, ensemble):
    """The script's query selection over ``source`` (what SURF draws its unlabelled pairs with)."""
    return functools.partial(select_queries, source, ensemble)


class FixedSource:
    """A segment source that hands out prepared segments in order (for select_queries)."""

    def __init__(self, parts: list[Segments]):
        self.parts = list(parts)

    def sample_segments(self, n, length, rng):
        seg = self.parts.pop(0)
        assert len(seg) == n and seg.length == length
        return seg


def _segments(values: np.ndarray, H: int) -> Segments:
    """Segments whose every step has obs[0] = values[i] (N,), all valid."""
    n = len(values)
    return Segments(
        obs=np.repeat(values[:, None, None], H, 1).astype(np.float32),
        actions=np.zeros((n, H, 1), np.float32),
        true_rewards=np.zeros((n, H), np.float32),
        mask=np.ones((n, H), bool),
        physics_states=np.zeros((n, H, 1), np.float32),
    )


def test_pseudo_label_loss_matches_a_hand_computed_value():
    H, scales, tau = 4, [0.5, 1.0], 0.9
    ens = LinearEnsemble(scales)
    a_vals = np.array([0.0, 0.0, 0.0, 1.0])
    b_vals = np.array([1.0, -1.0, 0.1, 1.0])
    # per member logit = scale · H · (b − a); the ensemble mean of σ decides: P = 0.932, 0.068, 0.56, 0.5
    probs = np.mean([1 / (1 + np.exp(-s * H * (b_vals - a_vals))) for s in scales], 0)
    confident = (probs > tau) | (probs < 1 - tau)
    assert confident.tolist() == [True, True, False, False]
    obs = torch.as_tensor(np.stack([_segments(a_vals, H).obs, _segments(b_vals, H).obs], 1))
    act, mask = torch.zeros(4, 2, H, 1), torch.ones(4, 2, H, dtype=torch.bool)
    pseudo, conf = confident_pseudo_labels(torch.as_tensor(probs, dtype=torch.float32), tau)
    m = 1
    logits = scales[m] * H * (b_vals - a_vals)
    ce = -np.log(1 / (1 + np.exp(-logits[0]))) - np.log(1 - 1 / (1 + np.exp(-logits[1])))  # labels 1 and 0
    assert ce == pytest.approx(2 * np.log1p(np.exp(-4.0)))
    expected = ce / 4  # a mean over all U = 4 pairs, the unconfident ones counting zero
    got = pseudo_label_loss(ens, m, obs, act, mask, pseudo, conf).detach()
    assert float(got) == pytest.approx(expected, rel=1e-5)

    # the same through the Surf hook (no cropping: offsets 0), weighted by λ_ssl, and 0 with λ_ssl = 0
    for lam in (0.3, 0.0):
        surf = Surf(SurfConfig(unlabeled_batch_ratio=1, tau=tau, lambda_ssl=lam, min_offset=0, max_offset=0), H)
        source = FixedSource([_segments(a_vals, H), _segments(b_vals, H)])
        surf.prepare(selector(source, ens), ens, labelled_pairs=4, rng=np.random.default_rng(0))
        assert float(surf.extra_loss(m, 4).detach()) == pytest.approx(lam * expected, rel=1e-5)
        if lam:
            assert surf.last_confident_fraction == pytest.approx(0.5)


def _dataset(rng, n=48, H=10) -> PreferenceDataset:
    data = PreferenceDataset(H, 3, 2, 1)
    seg = [
        Segments(
            obs=rng.normal(size=(n, H, 3)).astype(np.float32),
            actions=rng.normal(size=(n, H, 2)).astype(np.float32),
            true_rewards=np.zeros((n, H), np.float32),
            mask=np.arange(H)[None] < rng.integers(3, H + 1, size=(n, 1)),
            physics_states=np.zeros((n, H, 1), np.float32),
        )
        for _ in range(2)
    ]
    labels = (seg[1].obs[..., 0].sum(1) > seg[0].obs[..., 0].sum(1)).astype(np.float32)
    data.add(seg[0], seg[1], labels, 0, 0.25, rng)
    return data


def test_lambda_zero_without_cropping_trains_exactly_like_the_supervised_loss():
    data = _dataset(np.random.default_rng(4))
    cfg = RewardTrainingConfig(epochs=3, minibatch_size=16)
    params = []
    for use_surf in (False, True):
        torch.manual_seed(0)
        ens = RewardEnsemble(3, 2, members=2, hidden_dim=16, hidden_layers=2)
        opt = torch.optim.Adam(ens.parameters(), lr=1e-3)
        surf = None
        if use_surf:
            surf = Surf(SurfConfig(unlabeled_batch_ratio=2, tau=0.6, lambda_ssl=0.0, min_offset=0, max_offset=0), 10)
            source = FixedSource([data.seg_a[np.arange(20) % 10], data.seg_b[np.arange(20) % 10]])
            surf.prepare(selector(source, ens), ens, labelled_pairs=10, rng=np.random.default_rng(9))
        train_reward_ensemble(ens, opt, data, cfg, np.random.default_rng(5), semi_supervised=surf)
        params.append(torch.cat([p.detach().flatten() for p in ens.parameters()]))
    assert torch.equal(params[0], params[1])


def test_pseudo_labelled_loss_changes_training_when_weighted():
    data = _dataset(np.random.default_rng(4))
    cfg = RewardTrainingConfig(epochs=2, minibatch_size=16)
    out = []
    for lam in (0.0, 1.0):
        torch.manual_seed(0)
        ens = RewardEnsemble(3, 2, members=2, hidden_dim=16, hidden_layers=2)
        opt = torch.optim.Adam(ens.parameters(), lr=1e-3)
        surf = Surf(SurfConfig(unlabeled_batch_ratio=2, tau=0.5001, lambda_ssl=lam, min_offset=0, max_offset=0), 10)
        source = FixedSource([data.seg_a[:20], data.seg_b[:20]])
        surf.prepare(selector(source, ens), ens, labelled_pairs=10, rng=np.random.default_rng(9))
        train_reward_ensemble(ens, opt, data, cfg, np.random.default_rng(5), semi_supervised=surf)
        assert surf.last_confident_fraction > 0 or lam == 0
        out.append(torch.cat([p.detach().flatten() for p in ens.parameters()]))
    assert not torch.equal(out[0], out[1])


@dataclass
class Flags(SurfArgs):
    trajectory_length: int = 16


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("max_augmentation_offset", 16, "--max-augmentation-offset"),
        ("min_augmentation_offset", 11, "--min-augmentation-offset"),
        ("min_augmentation_offset", -1, "--min-augmentation-offset"),
        ("unlabeled_batch_ratio", 0, "--unlabeled-batch-ratio"),
        ("surf_tau", 0.4, "--surf-tau"),
        ("lambda_ssl", -0.1, "--lambda-ssl"),
    ],
)
def test_bad_surf_flags_are_rejected_by_name(field, value, needle):
    flags = Flags()
    check_flags(flags)
    setattr(flags, field, value)
    with pytest.raises(ValueError, match=needle):
        check_flags(flags)
    flags.surf = False
    check_flags(flags)  # SURF off: its flags are not checked


def test_crop_loss_is_finite_for_a_pair_cropped_into_padding():
    # a segment that terminated at step 0, cropped past it, has no valid step: its return is 0, the loss finite
    ens = RewardEnsemble(1, 1, members=1, hidden_dim=4, hidden_layers=1)
    obs, act = torch.randn(1, 2, 8, 1), torch.randn(1, 2, 8, 1)
    mask = torch.ones(1, 2, 8, dtype=torch.bool)
    mask[0, 0, 1:] = False
    o, a, k = crop_pairs(obs, act, mask, np.array([5]), np.array([[3, 0]]), 6)
    assert not k[0, 0].any() and k[0, 1].sum() == 5
    from rlhf.reward_training import member_logits

    logit = member_logits(ens, 0, o, a, k)
    assert torch.isfinite(F.binary_cross_entropy_with_logits(logit, torch.ones(1)))


def test_pool_size_and_a_custom_selector():
    H, calls = 8, []
    ens = LinearEnsemble([1.0])

    def recording(n, pool, length, strategy, rng):
        calls.append((n, pool, length, strategy))
        return _segments(np.zeros(n), H), _segments(np.ones(n), H)

    cfg = SurfConfig(unlabeled_batch_ratio=3, strategy="disagree", pool_multiplier=10, min_offset=0, max_offset=2)
    surf = Surf(cfg, H)
    surf.prepare(recording, ens, labelled_pairs=50, rng=np.random.default_rng(0))
    assert calls == [(150, 1500, H, "disagree")] and surf.pool[0].shape == (150, 2, H, 1)
    surf.prepare(recording, ens, labelled_pairs=5000, rng=np.random.default_rng(0))
    # the pool is capped at ratio × 1024 pairs, the scored candidates at max(pool, 4096)
    assert calls[-1] == (3 * 1024, 4096, H, "disagree")
