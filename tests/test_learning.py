"""The RLHF scripts learn: on the toy task whose reward is the action (tests/toy_env.py), the learned reward
correlates with the true one and the true return of the policy goes from about 0 (random) to well above it.

These fail within seconds when the label convention, the reward wiring or relabelling is broken. Checked by
breaking the wiring on purpose: with the labels flipped in ``FeedbackLoop.store`` (``labels = 1 - labels``), both
tests fail (pearson ≈ −1, final return ≈ −45 for PEBBLE, < 0 for PrefPPO); with the relabelling after a reward
update removed (``ReplayData.reward_updated`` not relabelling the buffer), the PEBBLE test fails on the return.
"""

from __future__ import annotations

import pref_ppo
import sac_rlhf
from script_runs import argv, run_in_process, scalars
from toy_env import EPISODE_STEPS, register_toy_env

TOY_SAC_RLHF = {
    "--total-timesteps": 1000,
    "--no-unsupervised-exploration": None,
    "--learning-starts": 200,
    "--teacher-feedback-total-queries": 60,
    "--teacher-feedback-num-queries-per-session": 15,
    "--teacher-feedback-schedule": "linear",
    "--trajectory-length": 10,
    "--batch-size": 64,
    "--actor-and-q-net-hidden-dim": 32,
    "--reward-net-hidden-dim": 16,
    "--reward-net-hidden-layers": 1,
    "--teacher-update-epochs": 20,
    "--no-surf": None,
    "--evaluation-frequency": 1000,
    "--evaluation-episodes": 2,
    "--log-frequency": 100,
}

TOY_PREF_PPO = {
    "--total-timesteps": 6144,
    "--no-unsupervised-exploration": None,
    "--num-envs": 4,
    "--num-steps": 64,
    "--num-minibatches": 4,
    "--update-epochs": 4,
    "--learning-rate": 3e-3,
    "--teacher-feedback-total-queries": 60,
    "--teacher-feedback-num-queries-per-session": 15,
    "--trajectory-length": 10,
    "--query-window-rollouts": 2,
    "--reward-net-hidden-dim": 16,
    "--reward-net-hidden-layers": 1,
    "--teacher-update-epochs": 20,
    "--evaluation-frequency": 6144,
    "--evaluation-episodes": 2,
    "--log-frequency": 1024,
}


def toy_argv(flags: dict, runs, **overrides) -> list[str]:
    switches = [k for k, v in flags.items() if v is None]
    return argv({k: v for k, v in flags.items() if v is not None}, runs, *switches, **overrides)


def assert_learned(m: dict) -> None:
    s = scalars(m["run_dir"])
    pearson = s["reward_model/pearson"][-1][1]
    assert pearson > 0.9, f"the learned reward does not follow the true one (pearson {pearson:.2f})"
    first = s["charts/episodic_return"][0][1]  # random actions: about 0
    final = m["eval/mean_return"]
    assert abs(first) < 0.3 * EPISODE_STEPS and final > 0.6 * EPISODE_STEPS, (first, final)


def test_pebble_learns_the_toy_reward_from_preferences(tmp_path, monkeypatch):
    env_id = register_toy_env(monkeypatch)
    m = run_in_process(sac_rlhf, toy_argv(TOY_SAC_RLHF, tmp_path, env_id=env_id))
    assert m["feedback/total_labels"] == 60
    assert_learned(m)


def test_pref_ppo_learns_the_toy_reward_from_preferences(tmp_path, monkeypatch):
    env_id = register_toy_env(monkeypatch)
    m = run_in_process(pref_ppo, toy_argv(TOY_PREF_PPO, tmp_path, env_id=env_id))
    assert m["feedback/total_labels"] == 60
    assert_learned(m)
