"""SURF (Park et al. 2022, "SURF: Semi-supervised Reward Learning with Data Augmentation for Feedback-efficient
Preference-based Reinforcement Learning"), the semi-supervised add-on to reward training (SPEC §7).

:class:`Surf` is the ``semi_supervised`` collaborator of :func:`rlhf.reward_training.train_reward_ensemble`:

- ``augment`` (temporal cropping): both segments of a labelled pair are cropped to one common random length
  L ∈ [H − max_offset, H − min_offset], each from its own random start in [0, H − L]. The label is kept.
  Cropping keeps the padding mask: padded steps after a termination stay masked (count zero) inside the window.
- ``extra_loss`` (pseudo-labels): unlabelled pairs drawn from the agent's buffer (``--surf-sampling-strategy``);
  a pair whose ensemble-mean P(B ≻ A) is > τ gets the pseudo-label 1, < 1 − τ the pseudo-label 0, any other pair
  is ignored. Each member's loss is λ_ssl · mean over the U unlabelled pairs of (confident · CE(cropped pair,
  pseudo-label)) — a mean over all U pairs as in SURF's code (FixMatch style), so few confident pairs weigh little.

Everything is batched over pairs and steps. The unlabelled pool (ratio × min(labels, 1024) pairs) is drawn once per
session; each member's minibatch takes ratio × B random pairs of it. Pseudo-labels are re-derived with the current
ensemble about once per epoch over the labels (every M × labels labelled pairs trained on), not for every member
and minibatch: measured on 2 CPU cores (Hopper sizes, 400 labels, 3 × 256 × 3 members), per-minibatch
pseudo-labelling made reward training 2.6× slower than without SURF.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rlhf.config import FeedbackArgs, SurfArgs
from rlhf.queries import Strategy
from rlhf.reward_model import RewardEnsemble, segment_returns
from rlhf.reward_training import member_logits
from rlhf.segments import Segments

# (pairs, candidate pairs, segment length, strategy, rng) -> (segments A, segments B), as rlhf.queries selects
Selector = Callable[[int, int, int, Strategy, np.random.Generator], tuple[Segments, Segments]]


@dataclass
class SurfConfig:
    """SURF's settings; the defaults are the flags' (rlhf.config.SurfArgs), see there for their meaning."""

    unlabeled_batch_ratio: int = SurfArgs.unlabeled_batch_ratio
    tau: float = SurfArgs.surf_tau
    lambda_ssl: float = SurfArgs.lambda_ssl
    min_offset: int = SurfArgs.min_augmentation_offset
    max_offset: int = SurfArgs.max_augmentation_offset
    strategy: Strategy = SurfArgs.surf_sampling_strategy
    pool_multiplier: int = FeedbackArgs.query_pool_multiplier  # candidates per unlabelled pair ('disagree'/'entropy')
    max_labelled_basis: int = 1024  # the unlabelled pool holds ratio × min(labels, this) pairs
    max_candidates: int = 4096  # cap on the candidate pairs scored for 'disagree'/'entropy'


def surf_config(args) -> SurfConfig:
    """The SurfConfig of a script's flags (``SurfArgs`` + ``--query-pool-multiplier``)."""
    return SurfConfig(
        unlabeled_batch_ratio=args.unlabeled_batch_ratio,
        tau=args.surf_tau,
        lambda_ssl=args.lambda_ssl,
        min_offset=args.min_augmentation_offset,
        max_offset=args.max_augmentation_offset,
        strategy=args.surf_sampling_strategy,
        pool_multiplier=args.query_pool_multiplier,
    )


def crop_windows(
    n: int, horizon: int, min_offset: int, max_offset: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random crops of n pairs: lengths (n,) in [H − max_offset, H − min_offset], starts (n, 2) in [0, H − L]."""
    lengths = rng.integers(horizon - max_offset, horizon - min_offset + 1, size=n)
    starts = rng.integers(0, (horizon - lengths + 1)[:, None], size=(n, 2))  # independent for A and B
    return lengths, starts


def crop_pairs(
    obs: torch.Tensor,
    act: torch.Tensor,
    mask: torch.Tensor,
    lengths: np.ndarray,
    starts: np.ndarray,
    out_length: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gather crops: obs (B, 2, H, o), act (B, 2, H, a), mask (B, 2, H) -> (B, 2, out_length, ·).

    Pair i keeps steps [starts[i, s], starts[i, s] + lengths[i]) of side s; steps of the output beyond
    ``lengths[i]`` and padded steps of the input are masked out.
    """
    horizon, dev = obs.shape[2], obs.device
    t = torch.arange(out_length, device=dev)
    idx = torch.as_tensor(starts, device=dev)[..., None] + t  # (B, 2, L_out)
    inside = t < torch.as_tensor(lengths, device=dev)[:, None, None]  # (B, 1, L_out)
    idx = idx.clamp(max=horizon - 1)
    o = obs.gather(2, idx[..., None].expand(-1, -1, -1, obs.shape[-1]))
    a = act.gather(2, idx[..., None].expand(-1, -1, -1, act.shape[-1]))
    k = mask.gather(2, idx) & inside
    return o, a, k


def confident_pseudo_labels(probs: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(U,) ensemble-mean P(B ≻ A) -> (pseudo-labels (U,) in {0, 1}, confident (U,) bool: P > τ or P < 1 − τ)."""
    return (probs > 0.5).float(), (probs > tau) | (probs < 1.0 - tau)


def pseudo_label_loss(
    ensemble: RewardEnsemble,
    m: int,
    obs: torch.Tensor,
    act: torch.Tensor,
    mask: torch.Tensor,
    pseudo: torch.Tensor,
    confident: torch.Tensor,
) -> torch.Tensor:
    """Σ over confident pairs of member m's CE against the pseudo-label, divided by all U pairs; () tensor."""
    if not bool(confident.any()):
        return torch.zeros((), device=obs.device)
    logits = member_logits(ensemble, m, obs[confident], act[confident], mask[confident])
    ce = F.binary_cross_entropy_with_logits(logits, pseudo[confident], reduction="sum")
    return ce / confident.numel()


class Surf:
    """SURF's cropping and pseudo-labelled loss over a per-session pool of unlabelled pairs (module docstring)."""

    def __init__(self, cfg: SurfConfig, horizon: int):
        self.cfg, self.horizon = cfg, horizon
        self.out_length = horizon - cfg.min_offset  # the longest crop
        self.ensemble: RewardEnsemble | None = None
        self.rng = np.random.default_rng(0)
        self.pool: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # obs, act, mask (P, 2, H, ·)
        self.seen = self.refresh_every = 0  # labelled pairs trained on since the pseudo-labels were derived
        self.pseudo = self.confident = torch.zeros(0)
        self.last_confident_fraction = float("nan")

    def prepare(
        self, select: Selector, ensemble: RewardEnsemble, labelled_pairs: int, rng: np.random.Generator
    ) -> None:
        """Draw this session's unlabelled pool with ``select(n, candidates, H, strategy, rng)`` (the agent's own
        query selection over its buffer); ``labelled_pairs`` sizes it: ratio × min(labels, 1024) pairs."""
        cfg = self.cfg
        self.ensemble, self.rng = ensemble, rng
        n = cfg.unlabeled_batch_ratio * max(1, min(labelled_pairs, cfg.max_labelled_basis))
        candidates = min(n * cfg.pool_multiplier, max(n, cfg.max_candidates))
        seg_a, seg_b = select(n, candidates, self.horizon, cfg.strategy, rng)
        dev = ensemble.device
        stack = lambda x, y: torch.tensor(np.stack([x, y], 1), device=dev)  # noqa: E731  (a copy: see rlhf.tensors)
        self.pool = (
            stack(seg_a.obs, seg_b.obs).float(),
            stack(seg_a.actions, seg_b.actions).float(),
            stack(seg_a.mask, seg_b.mask),
        )
        # pseudo-labels are re-derived after every len(ensemble) × labelled_pairs labelled pairs (all members' calls)
        self.refresh_every, self.seen = len(ensemble) * max(1, labelled_pairs), len(ensemble) * max(1, labelled_pairs)

    def augment(self, obs, act, mask, labels) -> tuple[torch.Tensor, ...]:
        """Temporal cropping of a labelled minibatch (B, 2, H, ·) -> (B, 2, H − min_offset, ·); labels unchanged."""
        lengths, starts = crop_windows(len(labels), self.horizon, self.cfg.min_offset, self.cfg.max_offset, self.rng)
        return (*crop_pairs(obs, act, mask, lengths, starts, self.out_length), labels)

    @torch.no_grad()
    def _relabel_pool(self) -> None:
        """Ensemble-mean P(B ≻ A) of every pool pair with the current ensemble (eval mode) -> pseudo-labels."""
        assert self.ensemble is not None and self.pool is not None
        obs, act, mask = self.pool
        was_training = self.ensemble.training
        self.ensemble.eval()
        returns = segment_returns(self.ensemble(obs, act), mask)  # (M, P, 2)
        self.ensemble.train(was_training)
        probs = torch.sigmoid(returns[..., 1] - returns[..., 0]).mean(0)  # (P,) ensemble mean of P_m
        self.pseudo, self.confident = confident_pseudo_labels(probs, self.cfg.tau)
        self.last_confident_fraction = float(self.confident.float().mean())

    def extra_loss(self, m: int, labelled: int) -> torch.Tensor:
        """λ_ssl · pseudo-labelled loss of member m on ratio × ``labelled`` cropped unlabelled pairs; () tensor."""
        if self.pool is None or self.cfg.lambda_ssl == 0:
            return torch.zeros((), device=self.ensemble.device if self.ensemble is not None else None)
        if self.seen >= self.refresh_every:  # about once per epoch over the labels: fresh pseudo-labels
            self._relabel_pool()
            self.seen = 0
        self.seen += labelled
        assert self.ensemble is not None  # set with the pool
        count, pool_size = self.cfg.unlabeled_batch_ratio * labelled, len(self.pool[0])
        idx = torch.as_tensor(self.rng.choice(pool_size, size=count, replace=count > pool_size))
        obs, act, mask = (x[idx.to(x.device)] for x in self.pool)
        lengths, starts = crop_windows(len(idx), self.horizon, self.cfg.min_offset, self.cfg.max_offset, self.rng)
        obs, act, mask = crop_pairs(obs, act, mask, lengths, starts, self.out_length)
        loss = pseudo_label_loss(
            self.ensemble, m, obs, act, mask, self.pseudo[idx].to(obs.device), self.confident[idx].to(obs.device)
        )
        return self.cfg.lambda_ssl * loss
