"""Reward ensemble r̂_m(s, a) learned from preferences with the Bradley–Terry model.

P_m(B ≻ A) = σ(Σ_t r̂_m(B_t) − Σ_t r̂_m(A_t)), summed over the valid (unpadded) steps only. Every prediction runs
in eval mode under ``torch.inference_mode`` (no dropout noise) over all pairs and steps in one call per member:
measured on 2 CPU cores, a Python loop over 3 members beat ``torch.func`` vmap/stacked weights for these sizes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlhf.config import FeedbackArgs
from rlhf.tensors import to_tensor


def _mlp(in_dim: int, hidden_dim: int, hidden_layers: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(dim, hidden_dim), nn.LeakyReLU(inplace=True)]  # in place: measured 5-10 % faster
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        dim = hidden_dim
    # tanh bounds each step's reward to [-1, 1] as in PEBBLE, which keeps the SAC targets on a fixed scale.
    layers += [nn.Linear(dim, 1), nn.Tanh()]
    return nn.Sequential(*layers)


class RewardEnsemble(nn.Module):
    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        members: int = FeedbackArgs.reward_net_ensemble_size,
        hidden_dim: int = FeedbackArgs.reward_net_hidden_dim,
        hidden_layers: int = FeedbackArgs.reward_net_hidden_layers,
        dropout: float = FeedbackArgs.reward_net_dropout,
    ):
        """Defaults: the --reward-net-* flags' (rlhf.config.FeedbackArgs)."""
        super().__init__()
        self.members = nn.ModuleList(
            _mlp(obs_dim + act_dim, hidden_dim, hidden_layers, dropout) for _ in range(members)
        )

    @classmethod
    def from_args(cls, args, obs_dim: int, act_dim: int) -> RewardEnsemble:
        """From the ``--reward-net-*`` flags of rlhf.config.FeedbackArgs."""
        return cls(obs_dim, act_dim, members=args.reward_net_ensemble_size, hidden_dim=args.reward_net_hidden_dim,
                   hidden_layers=args.reward_net_hidden_layers, dropout=args.reward_net_dropout)  # fmt: skip

    def __len__(self) -> int:
        return len(self.members)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(..., obs_dim), (..., act_dim) -> (M, ...) per-member step rewards."""
        x = torch.cat([obs, actions], dim=-1)
        flat = x.reshape(-1, x.shape[-1])
        return torch.stack([m(flat).squeeze(-1) for m in self.members]).reshape(len(self.members), *x.shape[:-1])

    def member_forward(self, m: int, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(..., obs_dim), (..., act_dim) -> (...) step rewards of member m."""
        x = torch.cat([obs, actions], dim=-1)
        return self.members[m](x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1])

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def segment_returns(step_rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(..., H) step rewards, (..., H) bool mask -> (...) sums over the valid steps."""
    return (step_rewards * mask).sum(-1)


def bradley_terry_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between P(B ≻ A) = σ(logits) and soft labels in [0, 1] (0.5 = equally good); (...) -> ()."""
    return F.binary_cross_entropy_with_logits(logits, labels)


def preference_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of strict labels (0 or 1) whose side the logits predict; equal labels do not count."""
    strict = labels != 0.5
    if not bool(strict.any()):
        return float("nan")
    return float(((logits[strict] > 0) == (labels[strict] > 0.5)).float().mean())


def _as_tensor(x: np.ndarray, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    return to_tensor(x, device, dtype)


@torch.inference_mode()
def predict_logits(ensemble: RewardEnsemble, obs_a, act_a, mask_a, obs_b, act_b, mask_b) -> torch.Tensor:
    """Per-member preference logits Σr̂(B) − Σr̂(A) for N pairs: arrays (N, H, ·) -> (M, N)."""
    was_training = ensemble.training
    ensemble.eval()
    dev = ensemble.device
    n = obs_a.shape[0]
    obs = _as_tensor(np.concatenate([obs_a, obs_b]), dev)  # A and B in one batched call: (2N, H, obs_dim)
    act = _as_tensor(np.concatenate([act_a, act_b]), dev)
    mask = _as_tensor(np.concatenate([mask_a, mask_b]), dev)
    returns = segment_returns(ensemble(obs, act), mask)  # (M, 2N)
    ensemble.train(was_training)
    return returns[:, n:] - returns[:, :n]


@torch.inference_mode()
def predict_rewards(ensemble: RewardEnsemble, obs: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean and std of r̂ for a batch of transitions: (n, ·) -> ((n,), (n,)). Used to relabel buffers."""
    was_training = ensemble.training
    ensemble.eval()
    r = ensemble(_as_tensor(obs, ensemble.device), _as_tensor(actions, ensemble.device))  # (M, n)
    ensemble.train(was_training)
    std = r.std(0, unbiased=False) if len(ensemble) > 1 else torch.zeros_like(r[0])
    return r.mean(0).cpu().numpy(), std.cpu().numpy()


@torch.inference_mode()
def predict_member_rewards(ensemble: RewardEnsemble, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Every member's r̂ for a batch of transitions: (n, ·) -> (n, M). Used to relabel the replay buffer."""
    was_training = ensemble.training
    ensemble.eval()
    r = ensemble(_as_tensor(obs, ensemble.device), _as_tensor(actions, ensemble.device))  # (M, n)
    ensemble.train(was_training)
    return r.T.cpu().numpy()
