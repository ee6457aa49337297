"""How well reward ensembles of different widths learn from the same oracle labels, and what they cost.

For each environment, SAC is trained on the true reward for ``--collect-steps`` steps and every transition is kept:
the buffer then spans random, clumsy and competent behaviour, like the buffer PEBBLE draws its queries from. From
it, label sessions of uniformly drawn segment pairs (H = ``--segment``) are labelled by the oracle teacher and the
ensemble is trained after each session exactly as sac_rlhf.py trains it (its default epochs, minibatches,
learning rate and 97 % early stop). After ``--checkpoints`` labels, the ensemble-mean preference is scored on
4 000 held-out random pairs against the oracle, and the mean learned step reward is correlated with the true one
over 50 000 random transitions. Each width sees the same labels (same seeds).

    uv run python benchmarks/reward_model_size.py                       # Hopper and Walker2d, widths 64/128/256
    uv run python benchmarks/reward_model_size.py --envs Hopper-v5 --seeds 1 --collect-steps 5000   # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from rlhf.agent import SAC, SACConfig
from rlhf.config import FeedbackArgs
from rlhf.envs import env_info, get_physics_state, make_env
from rlhf.feedback import pearson
from rlhf.preferences import PreferenceDataset
from rlhf.replay import ReplayBuffer
from rlhf.reward_model import RewardEnsemble, predict_logits, predict_rewards
from rlhf.reward_training import RewardTrainingConfig, train_reward_ensemble
from rlhf.teacher import SimulatedTeacher
from rlhf.tensors import to_tensor


def collect(env_id: str, steps: int, seed: int) -> ReplayBuffer:
    """Every transition of a SAC run on the true reward (random actions for the first 1 000 steps)."""
    torch.manual_seed(seed)  # the networks' initialisation and the policy's sampling: the same buffer every time
    env = make_env(env_id, seed=seed)
    env.action_space.seed(seed)
    info = env_info(env)
    agent = SAC(info.obs_dim, info.act_dim, info.action_low, info.action_high, SACConfig())
    rb = ReplayBuffer(steps, info.obs_dim, info.act_dim, info.physics_state_dim)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    episode_id = episode_step = 0
    for step in range(steps):
        action = env.action_space.sample() if step < 1000 else agent.act(obs)
        state = get_physics_state(env)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rb.add(obs, action, next_obs, reward, terminated, truncated, episode_id, episode_step, state)
        obs, episode_step = next_obs, episode_step + 1
        if terminated or truncated:
            obs, _ = env.reset()
            episode_id, episode_step = episode_id + 1, 0
        if step >= 1000:
            t = {k: to_tensor(v, torch.device("cpu")) for k, v in rb.sample_any(256, rng).items()}
            agent.update(t["obs"], t["actions"], t["true_rewards"], t["next_obs"], t["terminated"], step)
    env.close()
    return rb


def score(ensemble: RewardEnsemble, test_a, test_b, test_y, obs, actions, true_r) -> tuple[float, float]:
    """(accuracy of the ensemble-mean logit on the strict test labels, Pearson r of mean r̂ with the true reward)."""
    logits = predict_logits(ensemble, test_a.obs, test_a.actions, test_a.mask, test_b.obs, test_b.actions, test_b.mask)
    strict = test_y != 0.5
    acc = float(((logits.mean(0).numpy() > 0) == (test_y > 0.5))[strict].mean())
    mean, _ = predict_rewards(ensemble, obs, actions)
    return acc, pearson(mean, true_r)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["Hopper-v5", "Walker2d-v5"])
    p.add_argument("--widths", nargs="+", type=int, default=[64, 128, 256])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--collect-steps", type=int, default=15_000)
    p.add_argument("--segment", type=int, default=64)
    p.add_argument("--session", type=int, default=25, help="labels per session")
    p.add_argument("--checkpoints", nargs="+", type=int, default=[100, 200, 500])
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    flags = FeedbackArgs()  # sac_rlhf.py's defaults
    cfg = RewardTrainingConfig.from_args(flags)
    oracle = SimulatedTeacher.from_preset("oracle", np.random.default_rng(0))  # deterministic: no rng draws
    rows = []
    for env_id in a.envs:
        t0 = time.perf_counter()
        rb = collect(env_id, a.collect_steps, seed=0)
        returns = np.bincount(rb.episode_id[: rb.size], weights=rb.true_rewards[: rb.size])
        print(f"{env_id}: {a.collect_steps} SAC steps in {time.perf_counter() - t0:.0f} s, episode returns "
              f"{returns.min():.0f}..{returns.max():.0f}", flush=True)  # fmt: skip
        test_rng = np.random.default_rng(12345)
        test_a, test_b = rb.sample_segments(4000, a.segment, test_rng), rb.sample_segments(4000, a.segment, test_rng)
        test_y = oracle.label(test_a.true_rewards, test_b.true_rewards)
        pick = test_rng.integers(0, rb.size, 50_000)
        obs, actions, true_r = rb.obs[pick], rb.actions[pick], rb.true_rewards[pick]
        for seed in a.seeds:
            for width in a.widths:
                torch.manual_seed(seed)
                rng = np.random.default_rng(seed)  # the same labels and splits for every width
                sized = dataclasses.replace(flags, reward_net_hidden_dim=width)
                ensemble = RewardEnsemble.from_args(sized, rb.obs.shape[1], rb.actions.shape[1])
                optimizer = torch.optim.Adam(ensemble.parameters(), lr=flags.teacher_learning_rate)
                data = PreferenceDataset(a.segment, rb.obs.shape[1], rb.actions.shape[1], rb.physics_states.shape[1])
                seconds = 0.0
                for session in range(max(a.checkpoints) // a.session):
                    seg_a, seg_b = (
                        rb.sample_segments(a.session, a.segment, rng),
                        rb.sample_segments(a.session, a.segment, rng),
                    )
                    labels = oracle.label(seg_a.true_rewards, seg_b.true_rewards)
                    data.add(seg_a, seg_b, labels, session, flags.reward_net_val_split, rng)
                    t0 = time.perf_counter()
                    train_reward_ensemble(ensemble, optimizer, data, cfg, rng)
                    seconds += time.perf_counter() - t0
                    if len(data) in a.checkpoints:
                        acc, corr = score(ensemble, test_a, test_b, test_y, obs, actions, true_r)
                        rows.append((env_id, width, seed, len(data), acc, corr, seconds))
                        print(f"  {env_id} width {width:3d} seed {seed} labels {len(data):4d}: test accuracy "
                              f"{acc:.3f}, reward correlation {corr:.3f}, training {seconds:.1f} s", flush=True)  # fmt: skip
    print("\nmean over seeds: env, width, labels -> test accuracy, reward correlation, cumulative training seconds")
    for env_id in a.envs:
        for labels in a.checkpoints:
            for width in a.widths:
                sel = [r for r in rows if r[0] == env_id and r[1] == width and r[3] == labels]
                acc, corr, sec = (float(np.mean([r[i] for r in sel])) for i in (4, 5, 6))
                accs = " ".join(f"{r[4]:.3f}" for r in sel)
                print(f"  {env_id:12s} {width:4d} {labels:5d}: {acc:.3f} ({accs}), {corr:.3f}, {sec:6.1f} s")


if __name__ == "__main__":
    main()
