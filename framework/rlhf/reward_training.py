"""Training the reward ensemble on a preference dataset (Bradley–Terry, soft labels, train/validation split).

Each member walks the training labels in its own random order, so members stay diverse (PEBBLE). Training stops
early once the members' mean training accuracy passes a threshold, as PEBBLE does, so later sessions (where the
model already explains most labels) cost a few epochs rather than all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch

from rlhf.config import FeedbackArgs
from rlhf.preferences import PreferenceDataset
from rlhf.reward_model import (
    RewardEnsemble,
    bradley_terry_loss,
    predict_logits,
    preference_accuracy,
    segment_returns,
)
from rlhf.tensors import to_tensor

BatchStrategy = Literal["minibatch", "batch", "full"]


class SemiSupervised(Protocol):
    """What semi-supervised reward learning (rlhf.surf.Surf) adds to the supervised loop."""

    def augment(self, obs, act, mask, labels) -> tuple[torch.Tensor, ...]:
        """A labelled minibatch obs (B, 2, H, o), actions (B, 2, H, a), mask (B, 2, H), labels (B,), transformed
        (H may shrink)."""

    def extra_loss(self, m: int, labelled: int) -> torch.Tensor:
        """An extra loss term for member m, given the labelled pairs in its minibatch; () tensor."""


# PEBBLE stops a session's reward training once the members' mean training accuracy reaches this.
EARLY_STOP_ACCURACY = 0.97


@dataclass
class RewardTrainingConfig:
    """Reward training settings; the defaults are the flags' (rlhf.config.FeedbackArgs), see there."""

    epochs: int = FeedbackArgs.teacher_update_epochs
    batch_strategy: BatchStrategy = FeedbackArgs.teacher_batch_strategy
    minibatch_size: int = FeedbackArgs.teacher_minibatch_size
    batch_size: int = FeedbackArgs.teacher_feedback_batch_size
    early_stop_accuracy: float = EARLY_STOP_ACCURACY

    @classmethod
    def from_args(cls, args) -> RewardTrainingConfig:
        """From the --teacher-* flags of rlhf.config.FeedbackArgs."""
        return cls(epochs=args.teacher_update_epochs, batch_strategy=args.teacher_batch_strategy,
                   minibatch_size=args.teacher_minibatch_size, batch_size=args.teacher_feedback_batch_size)  # fmt: skip


def pair_tensors(data: PreferenceDataset, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Stack A and B along a pair axis: obs (N, 2, H, o), actions (N, 2, H, a), mask (N, 2, H), labels (N,)."""
    obs = to_tensor(np.stack([data.seg_a.obs, data.seg_b.obs], 1), device)
    act = to_tensor(np.stack([data.seg_a.actions, data.seg_b.actions], 1), device)
    mask = to_tensor(np.stack([data.seg_a.mask, data.seg_b.mask], 1), device, torch.bool)
    labels = to_tensor(data.labels, device)
    return obs, act, mask, labels


def member_logits(ensemble: RewardEnsemble, m: int, obs, act, mask) -> torch.Tensor:
    """Logits Σr̂_m(B) − Σr̂_m(A) of member m for pairs (B, 2, H, ·) -> (B,)."""
    returns = segment_returns(ensemble.member_forward(m, obs, act), mask)  # (B, 2)
    return returns[:, 1] - returns[:, 0]


def _batches(strategy: BatchStrategy, n: int, cfg: RewardTrainingConfig, members: int, rng: np.random.Generator):
    """Per-member index batches for one epoch: a list of (M, B) arrays."""
    if strategy == "full":
        return [np.stack([rng.permutation(n) for _ in range(members)])]
    if strategy == "batch":
        size = min(cfg.batch_size, n)
        return [np.stack([rng.choice(n, size=size, replace=False) for _ in range(members)])]
    orders = np.stack([rng.permutation(n) for _ in range(members)])  # (M, n)
    return [orders[:, s : s + cfg.minibatch_size] for s in range(0, n, cfg.minibatch_size)]


def train_reward_ensemble(
    ensemble: RewardEnsemble,
    optimizer: torch.optim.Optimizer,
    data: PreferenceDataset,
    cfg: RewardTrainingConfig,
    rng: np.random.Generator,
    semi_supervised: SemiSupervised | None = None,
) -> dict[str, float]:
    """Train on the training labels (with SURF's cropping and pseudo-labelled loss when ``semi_supervised``);
    return losses/accuracies on train and validation labels and epochs run."""
    train_idx = data.train_indices()
    if len(train_idx) == 0:
        return {"epochs": 0.0, **evaluate_reward_ensemble(ensemble, data)}
    obs, act, mask, labels = pair_tensors(data, ensemble.device)
    obs, act, mask, labels = obs[train_idx], act[train_idx], mask[train_idx], labels[train_idx]
    ensemble.train()
    epochs_run = 0
    for _ in range(cfg.epochs):
        epochs_run += 1
        correct = counted = 0.0
        for batch in _batches(cfg.batch_strategy, len(train_idx), cfg, len(ensemble), rng):
            loss = torch.zeros((), device=ensemble.device)
            for m in range(len(ensemble)):
                b = torch.as_tensor(batch[m], device=ensemble.device)
                o, a, k, y = obs[b], act[b], mask[b], labels[b]
                if semi_supervised is not None:
                    o, a, k, y = semi_supervised.augment(o, a, k, y)
                logits = member_logits(ensemble, m, o, a, k)
                loss = loss + bradley_terry_loss(logits, y)
                if semi_supervised is not None:
                    loss = loss + semi_supervised.extra_loss(m, len(y))
                strict = y != 0.5
                correct += float(((logits > 0) == (y > 0.5))[strict].sum())
                counted += float(strict.sum())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if (
            semi_supervised is not None
        ):  # judge the fit on the labelled pairs themselves, not on this epoch's random crops
            correct, counted = _members_correct(ensemble, obs, act, mask, labels)
        if counted and correct / counted >= cfg.early_stop_accuracy:
            break
    return {"epochs": float(epochs_run), **evaluate_reward_ensemble(ensemble, data)}


@torch.inference_mode()
def _members_correct(ensemble: RewardEnsemble, obs, act, mask, labels) -> tuple[float, float]:
    """(correct, counted) strict labels summed over members, in eval mode on uncropped pairs (B, 2, H, ·).

    With SURF's cropping, the accuracy seen during an epoch is that of random crops, which stays below PEBBLE's
    97 % threshold long after the model explains the labels: measured on Hopper, reward training then ran 24–50
    epochs per session instead of 5–18, tripling SURF's cost.
    """
    ensemble.eval()
    strict = labels != 0.5
    correct = sum(
        float(((member_logits(ensemble, m, obs, act, mask) > 0) == (labels > 0.5))[strict].sum())
        for m in range(len(ensemble))
    )
    ensemble.train()
    return correct, float(strict.sum()) * len(ensemble)


def evaluate_reward_ensemble(ensemble: RewardEnsemble, data: PreferenceDataset) -> dict[str, float]:
    """Loss and accuracy of the ensemble-mean logit on the training and the validation labels (eval mode)."""
    out: dict[str, float] = {}
    for split, idx in (("train", data.train_indices()), ("val", data.val_indices())):
        if len(idx) == 0:
            out[f"{split}_loss"] = out[f"{split}_accuracy"] = float("nan")
            continue
        a, b = data.seg_a[idx], data.seg_b[idx]
        logits = predict_logits(ensemble, a.obs, a.actions, a.mask, b.obs, b.actions, b.mask).mean(0)  # (n,)
        y = torch.as_tensor(data.labels[idx], device=logits.device)
        out[f"{split}_loss"] = float(bradley_terry_loss(logits, y))
        out[f"{split}_accuracy"] = preference_accuracy(logits, y)
    return out
