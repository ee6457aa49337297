"""GAE, rollout storage, same-step autoreset, observation normalisation and reward scaling of the PPO library."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlhf.ppo_agent import PPOAgent, RewardScaler, RunningMeanStd
from rlhf.rollout import RolloutBuffer, compute_gae, final_observations, make_vector_env


def test_gae_hand_computed_with_a_termination_and_a_truncation():
    # one env, 4 steps: the episode terminates at t=1 and is truncated at t=2 (V(final obs) = 10); V(obs after) = 3
    gamma, lam = 0.9, 0.5
    buf = RolloutBuffer(4, 1, 1, 1)
    buf.values[:, 0] = [0.5, 1.0, 1.5, 2.0]
    buf.terminated[:, 0] = [False, True, False, False]
    buf.truncated[:, 0] = [False, False, True, False]
    buf.final_values[2, 0] = 10.0
    buf.final_values[1, 0] = 99.0  # a terminated step never bootstraps, whatever is stored
    buf.set_next_values(np.array([3.0], np.float32))
    rewards = np.array([[1.0], [2.0], [3.0], [4.0]], np.float32)
    adv, ret = buf.advantages(rewards, gamma, lam)
    # δ0 = 1 + 0.9·1.0 − 0.5 = 1.4; δ1 = 2 − 1.0 = 1.0 (terminated); δ2 = 3 + 0.9·10 − 1.5 = 10.5 (truncated:
    # bootstrap from the final observation); δ3 = 4 + 0.9·3 − 2 = 4.7. A3 = 4.7; A2 = δ2 = 10.5 (episode ended);
    # A1 = δ1 = 1.0 (episode ended); A0 = 1.4 + 0.45 · 1.0 = 1.85.
    np.testing.assert_allclose(adv[:, 0], [1.85, 1.0, 10.5, 4.7], rtol=1e-6)
    np.testing.assert_allclose(ret[:, 0], [2.35, 2.0, 12.0, 6.7], rtol=1e-6)


def test_gae_without_episode_ends_is_the_discounted_sum_of_td_errors(rng):
    T, N, gamma, lam = 7, 3, 0.97, 0.9
    rewards, values = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    next_values = np.r_[values[1:], rng.normal(size=(1, N))]
    none = np.zeros((T, N), bool)
    adv, ret = compute_gae(rewards, values, next_values, none, none, gamma, lam)
    deltas = rewards + gamma * next_values - values
    expected = np.array([[sum((gamma * lam) ** k * deltas[t + k, i] for k in range(T - t)) for i in range(N)]
                         for t in range(T)])  # fmt: skip
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ret, expected + values, rtol=1e-5, atol=1e-6)
    # λ = 1, γ = 1 and a termination at the end: the advantage is the Monte-Carlo return minus the value
    term = none.copy()
    term[-1] = True
    adv1, _ = compute_gae(rewards, values, next_values, term, none, 1.0, 1.0)
    np.testing.assert_allclose(adv1[0], rewards.sum(0) - values[0], rtol=1e-5, atol=1e-6)


def test_same_step_autoreset_stores_no_pseudo_transition():
    envs = make_vector_env("InvertedPendulum-v5", 2, seed=0)
    envs.reset(seed=0)
    ends = 0
    for _ in range(60):
        next_obs, reward, terminated, truncated, infos = envs.step(np.full((2, 1), 3.0, np.float32))
        real = final_observations(next_obs, infos)
        done = terminated | truncated
        # InvertedPendulum-v5 pays 1 per step, 0 at the terminal step; NEXT_STEP autoreset would add a reset step
        # with reward 0 that is not terminated
        np.testing.assert_array_equal(reward, (~terminated).astype(float))
        for i in range(2):
            if done[i]:
                ends += 1
                assert not np.allclose(real[i], next_obs[i])  # the true last observation, not the reset one
                assert np.abs(next_obs[i]).max() < 0.02  # the next episode already started in this step
            else:
                np.testing.assert_array_equal(real[i], next_obs[i])
    envs.close()
    assert ends >= 4


def test_observation_statistics_are_saved_with_the_agent_and_used_to_act():
    torch.manual_seed(0)
    agent = PPOAgent(3, 1, np.array([-1.0]), np.array([1.0]))
    torch.nn.init.normal_(agent.actor_mean[-1].weight, std=0.1)  # a policy that depends visibly on the input
    data = np.random.default_rng(0).normal(5.0, 3.0, size=(500, 3))
    agent.obs_norm.update(data[:200])
    agent.obs_norm.update(data[200:])
    np.testing.assert_allclose(agent.obs_norm.mean.numpy(), data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(agent.obs_norm.var.numpy(), data.var(0), rtol=1e-3)
    state = agent.state_dict()
    assert {"obs_norm.mean", "obs_norm.var", "obs_norm.count"} <= set(state)
    restored = PPOAgent(3, 1, np.array([-1.0]), np.array([1.0]))
    restored.load_state_dict(state)
    fresh = PPOAgent(3, 1, np.array([-1.0]), np.array([1.0]))
    fresh.load_state_dict({k: v for k, v in state.items() if not k.startswith("obs_norm")}, strict=False)
    x = np.array([5.5, 1.0, 9.0], np.float32)
    np.testing.assert_array_equal(restored.act(x), agent.act(x))
    assert np.abs(agent.act(x)).max() < 1.0  # not saturated, so the comparison below is meaningful
    assert not np.allclose(fresh.act(x), agent.act(x), atol=1e-3)  # without the statistics the policy acts differently
    assert np.abs(agent.act(x * 100)).max() <= 1.0  # actions are clipped to the bounds


def test_running_mean_std_matches_numpy_over_batches(rng):
    rms = RunningMeanStd((2,))
    parts = [rng.normal(size=(n, 2)) * 4 + 1 for n in (1, 7, 100)]
    for p in parts:
        rms.update(p)
    allx = np.concatenate(parts)
    np.testing.assert_allclose(rms.mean.numpy(), allx.mean(0), rtol=1e-4)
    np.testing.assert_allclose(rms.var.numpy(), allx.var(0), rtol=1e-3)


def test_reward_scaler_divides_by_the_discounted_return_std_and_restarts_at_episode_ends():
    scaler = RewardScaler(1, gamma=0.5)
    rewards = np.array([[1.0], [1.0], [1.0], [1.0]])
    dones = np.array([[False], [True], [False], [False]])
    out = scaler(rewards, dones)
    discounted = np.array([1.0, 1.5, 1.0, 1.5])  # restarts after the episode end at t=1
    expected_var = (1e-4 * 1.0 + 4 * discounted.var() + discounted.mean() ** 2 * 1e-4 * 4 / (4 + 1e-4)) / (4 + 1e-4)
    np.testing.assert_allclose(out[:, 0], 1.0 / np.sqrt(expected_var + 1e-8), rtol=1e-4)
    assert (np.sign(scaler(-rewards, dones)) == -1).all()  # not centred: the sign of a reward is kept
    state = scaler.state_dict()
    other = RewardScaler(1, 0.5)
    other.load_state_dict(state)
    assert float(other.rms.var) == pytest.approx(float(scaler.rms.var))
