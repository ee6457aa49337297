"""Train a reward ensemble offline on preference datasets and score it (issue 12, item 3): do the labels collected
for one run teach a reward model, and does it agree with another set of labels?

    python framework/train_reward_model.py runs/<run>/preferences.safetensors [more.safetensors ...]
        [--test-preferences other.safetensors]

The datasets (rlhf.pref_dataset; one environment) are joined, and --reward-net-val-split of each session's labels
is held out, as in a run; the ensemble trains on the rest with the runs' own code (rlhf.reward_training, same
flags and defaults) and is scored on the held-out labels: Bradley-Terry loss and accuracy of the ensemble-mean
logit on strict labels, and, where the datasets know the environment's rewards, the Pearson correlation between
r̂ and the true reward over the held-out segments' steps. --test-preferences scores it on other labels too. The
result is printed as one JSON object (and returned by ``main``).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import tyro

from rlhf.cli import run_cli
from rlhf.config import ConfigError, RewardModelArgs
from rlhf.feedback import pearson
from rlhf.pref_dataset import DatasetError, LabelledPairs, check_fits, read
from rlhf.preferences import PreferenceDataset
from rlhf.reward_model import RewardEnsemble, predict_rewards
from rlhf.reward_training import RewardTrainingConfig, evaluate_reward_ensemble, train_reward_ensemble
from rlhf.tracking import seed_everything, setup_logging

log = logging.getLogger("cleanrlhf")


@dataclass
class Args(RewardModelArgs):
    """Train a reward ensemble on preference datasets and report its held-out accuracy."""

    datasets: Annotated[tuple[str, ...], tyro.conf.Positional] = ()
    """preference datasets (.safetensors) to train on"""
    test_preferences: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """a preference dataset to score the trained model on as well (repeatable)"""
    seed: int = 1
    """seed of torch and numpy (the split, the members' initialisation and minibatch orders)"""
    threads: int = 1
    """torch CPU threads"""
    log_level: str = "WARNING"
    """logging verbosity"""


def _load(paths: tuple[str, ...], flag: str) -> LabelledPairs:
    try:
        parts = [read(p) for p in paths]
    except DatasetError as e:
        raise ValueError(f"{flag}: {e}" if flag else str(e)) from e
    for path, part in zip(paths[1:], parts[1:], strict=True):
        d = parts[0].dims()
        check_fits(part, path, parts[0].env_id, d["segment_length"], d["obs_dim"], d["act_dim"], d["state_dim"])
    return LabelledPairs.concatenate(parts)


def _as_dataset(pairs: LabelledPairs, val_split: float, rng: np.random.Generator) -> PreferenceDataset:
    """The pairs as the runs keep them, each (run, session) split into training and held-out labels."""
    d = pairs.dims()
    data = PreferenceDataset(d["segment_length"], d["obs_dim"], d["act_dim"], d["state_dim"])
    groups = {(run, int(s)) for run, s in zip(pairs.run_ids, pairs.sessions, strict=True)}
    for number, (run, session) in enumerate(sorted(groups)):
        idx = np.flatnonzero((np.array(pairs.run_ids) == run) & (pairs.sessions == session))
        data.add(pairs.seg_a[idx], pairs.seg_b[idx], pairs.labels[idx], number, val_split, rng)
    return data


def _pearson(ensemble: RewardEnsemble, data: PreferenceDataset, idx: np.ndarray) -> float:
    """Pearson r between r̂ (ensemble mean) and the true reward over the valid steps of the pairs ``idx``."""
    segs = [data.seg_a[idx], data.seg_b[idx]]
    obs = np.concatenate([s.obs[s.mask] for s in segs])
    actions = np.concatenate([s.actions[s.mask] for s in segs])
    true = np.concatenate([s.true_rewards[s.mask] for s in segs])
    mean, _ = predict_rewards(ensemble, obs, actions)
    return pearson(mean, true)


def main(args: Args) -> dict[str, float | str]:
    setup_logging(args.log_level)
    try:
        if not args.datasets:
            raise ValueError("give at least one preference dataset to train on")
        train = _load(args.datasets, "")
        test = _load(args.test_preferences, "--test-preferences") if args.test_preferences else None
        if test is not None:
            d = train.dims()
            check_fits(test, "--test-preferences", train.env_id, d["segment_length"], d["obs_dim"], d["act_dim"],
                       d["state_dim"])  # fmt: skip
        RewardModelArgs.check(args)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    torch.set_num_threads(args.threads)
    seed_everything(args.seed, deterministic=True)
    rng = np.random.default_rng(args.seed)
    data = _as_dataset(train, args.reward_net_val_split, rng)
    d = train.dims()
    ensemble = RewardEnsemble.from_args(args, d["obs_dim"], d["act_dim"])
    optimizer = torch.optim.Adam(ensemble.parameters(), lr=args.teacher_learning_rate)
    trained = train_reward_ensemble(ensemble, optimizer, data, RewardTrainingConfig.from_args(args), rng)
    result: dict[str, float | str] = {"env_id": train.env_id, "labels": float(len(data)),
                                "train_labels": float(len(data.train_indices())),
                                "val_labels": float(len(data.val_indices())), **trained}  # fmt: skip
    if train.true_rewards_known:
        result["val_pearson"] = _pearson(ensemble, data, data.val_indices())
    if test is not None:
        test_data = PreferenceDataset(d["segment_length"], d["obs_dim"], d["act_dim"], d["state_dim"])
        test_data.add(test.seg_a, test.seg_b, test.labels, 0, 0.0, rng)
        test_data.is_val[:] = True  # every label is held out
        scored = evaluate_reward_ensemble(ensemble, test_data)
        result |= {"test_labels": float(len(test)), "test_loss": scored["val_loss"],
                   "test_accuracy": scored["val_accuracy"]}  # fmt: skip
        if test.true_rewards_known:
            result["test_pearson"] = _pearson(ensemble, test_data, np.arange(len(test)))
    print(json.dumps(result))
    return result


def cli(argv: list[str] | None = None) -> int:
    return run_cli(Args, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
