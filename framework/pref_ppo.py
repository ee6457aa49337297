"""PrefPPO (Lee et al. 2021, B-Pref): PPO trained on a reward ensemble learned from a teacher's preferences.

Read top to bottom: flags, set-up, then per iteration: (1) a rollout in --num-envs environments, whose
transitions (with MuJoCo states, to re-render clips) also go into a window of recent rollouts; (2) during
unsupervised pre-exploration, the rollout's reward is the k-NN state entropy; afterwards (3) feedback sessions on
the schedule (rlhf.feedback_loop: queries drawn from segments of the window, labels stored with their segments'
data, the reward ensemble trained, optionally with SURF) and (4) the rollout relabelled with the learned reward
(+ RUNE's bonus) before GAE; (5) the PPO update. The run (rlhf.run) logs, evaluates on the true return, stops
early and checkpoints.
"""

from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import tyro

from rlhf.agent_data import WindowData
from rlhf.cli import run_cli
from rlhf.config import ExplorationArgs, FeedbackArgs, GeneralArgs, ResumeArgs, RuneArgs, SurfArgs, check_flags
from rlhf.env_state import VectorEnvState
from rlhf.envs import env_info, get_physics_state
from rlhf.exploration import RunningStd, load_exploration, save_exploration, state_entropy_reward
from rlhf.feedback_loop import FeedbackLoop, SessionConfig, keep_preferences, make_teacher
from rlhf.ppo_agent import PPOAgent, PPOArgs, RewardScaler, num_rollouts, ppo_update
from rlhf.preferences import PreferenceDataset
from rlhf.registry import Stateful
from rlhf.reward_model import RewardEnsemble, predict_rewards
from rlhf.rollout import RolloutBuffer, RolloutWindow, final_observations, make_vector_env
from rlhf.run import Run
from rlhf.rune import Rune
from rlhf.schedule import session_steps
from rlhf.surf import Surf, surf_config
from rlhf.video import QueryClipRecorder

log = logging.getLogger("cleanrlhf")


@dataclass
class Args(ResumeArgs, PPOArgs, SurfArgs, RuneArgs, ExplorationArgs, FeedbackArgs, GeneralArgs):
    """PrefPPO: PPO on a reward learned from preferences."""

    teacher_feedback_schedule: Literal["linear", "exponential"] = "linear"
    """when feedback sessions happen: evenly spaced, or dense early with exponentially growing gaps"""
    surf: bool = False
    """SURF: temporal cropping of labelled pairs and confidence-thresholded pseudo-labels for unlabelled pairs"""
    query_window_rollouts: int = 5
    """queries (and SURF's unlabelled pairs) are drawn from the segments of the last this many rollouts"""
    # SAC-only exploration knobs: PPO explores on-policy from the first step, with its own batch.
    explore_batch_size: tyro.conf.Suppress[int] = 256
    explore_learning_starts: tyro.conf.Suppress[int] = 512

    def check(self) -> None:
        if self.query_window_rollouts <= 0:
            raise ValueError(f"--query-window-rollouts must be positive, got {self.query_window_rollouts}")
        batch = self.num_envs * self.num_steps
        if -(-self.explore_steps() // batch) * batch >= -(-self.total_timesteps // batch) * batch:
            raise ValueError(
                f"--total-explore-steps ({self.explore_steps()}) leaves no rollout of --total-timesteps "
                f"({self.total_timesteps}) for learning from feedback (one rollout = --num-envs × --num-steps = "
                f"{batch} steps)"
            )


def main(args: Args) -> dict[str, float]:
    run = Run(args, __file__)
    args = run.args
    with run.checking_flags():
        check_flags(args)
        envs = make_vector_env(args.env_id, args.num_envs, args.seed, "human" if args.render_mode == "human" else None)
        eval_env = run.make_eval_env()
        run.close_at_end(envs, eval_env)
        info = env_info(envs.envs[0])
        H, N, T = args.trajectory_length, args.num_envs, args.num_steps
        if min(info.max_episode_steps, args.query_window_rollouts * T) < H:
            raise ValueError(f"--trajectory-length {H} is longer than an episode or the rollout window")
        batch_size = N * T
        num_iterations = num_rollouts(args.total_timesteps, batch_size)
        explore_iterations = -(-args.explore_steps() // batch_size)  # rollouts that start before exploration ends
        num_sessions = args.teacher_feedback_total_queries // args.teacher_feedback_num_queries_per_session
        # a session runs after the first rollout that ends at or after its step; the last rollout ends at the end
        sessions = session_steps(args.teacher_feedback_schedule, explore_iterations * batch_size,
                                 num_iterations * batch_size + 1, num_sessions,
                                 args.teacher_feedback_exponential_lambda)  # fmt: skip
        device = run.torch_setup()
        rng_ppo, rng_queries, rng_teacher = run.generators("ppo", "queries", "teacher")

        agent = PPOAgent(info.obs_dim, info.act_dim, info.action_low, info.action_high).to(device)
        optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
        ensemble = RewardEnsemble.from_args(args, info.obs_dim, info.act_dim).to(device)
        reward_optimizer = torch.optim.Adam(ensemble.parameters(), lr=args.teacher_learning_rate)
        rollout = RolloutBuffer(T, N, info.obs_dim, info.act_dim)
        window = RolloutWindow(N, args.query_window_rollouts * T, info.obs_dim, info.act_dim, info.physics_state_dim)
        reward_scaler = RewardScaler(N, args.gamma)
        data = WindowData(window, ensemble, after_first_update=reward_scaler.reset)  # the learned reward's own scale
        prefs = PreferenceDataset(H, info.obs_dim, info.act_dim, info.physics_state_dim)
        surf = Surf(surf_config(args), H) if args.surf else None
        clips = (
            QueryClipRecorder(run.directory() / "videos" / "queries", args.env_id, args.feedback_clip_size)
            if args.capture_video
            else None
        )
        run.close_at_end(clips)
        loop = FeedbackLoop(SessionConfig.from_args(args), sessions, None, ensemble, reward_optimizer, prefs, data,
                            rng_queries, surf, run.log_scalars, clips)  # fmt: skip
        keep_preferences(args, run, loop)  # labels kept in <run>/preferences.safetensors; --preferences-load
        rune = Rune.from_args(args)
        explore_norm = RunningStd()
        next_obs, _ = envs.reset(seed=args.seed)
        vec = VectorEnvState(envs, next_obs)  # the environments' state between rollouts

        start_step = 0
        if args.exploration_load and not run.resumed:
            load_exploration(args, agent, window)
            start_step = explore_iterations * batch_size
            log.info("loaded %d exploration transitions; skipping exploration", window.size)
        for name, component in (("agent", agent), ("optimizer", optimizer), ("reward_scaler", reward_scaler),
                                ("feedback", loop), ("explore_norm", explore_norm), ("envs", vec)):  # fmt: skip
            run.register(name, component)
        exact_window = Stateful(window.state_dict, functools.partial(window.load_state_dict, continue_episodes=True))
        run.register("rollout_window", exact_window, large=True)
        global_step = run.begin(eval_env, agent.act, num_iterations * batch_size, start_step)
        loop.teacher = make_teacher(args, run, loop, rng_teacher)
        run.final_scalars(loop.final_scalars)
        log.info("feedback sessions after steps %s", sessions.tolist())

    def normalise(obs: np.ndarray, update: bool) -> torch.Tensor:
        if update:
            agent.obs_norm.update(obs)
        return agent.obs_norm(torch.as_tensor(obs, dtype=torch.float32, device=device))

    train_metrics: dict[str, float] = {}
    with run:
        for iteration in range(global_step // batch_size, num_iterations):
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = (1.0 - iteration / num_iterations) * args.learning_rate
            exploring = iteration < explore_iterations

            # (1) rollout; every transition also goes into the segment window, with the MuJoCo state of its obs
            for t in range(T):
                rollout.raw_obs[t] = vec.next_obs
                with torch.no_grad():
                    obs_t = normalise(vec.next_obs, update=True)
                    action, logprob, _, value = agent.get_action_and_value(obs_t)
                action = action.cpu().numpy()
                env_action = agent.clip_action(action)
                physics = [get_physics_state(env) for env in envs.envs]
                vec.next_obs, reward, terminated, truncated, infos = envs.step(env_action)
                real_next = final_observations(vec.next_obs, infos)
                truncated_only = truncated & ~terminated
                if truncated_only.any():  # bootstrap value of the true final observation
                    with torch.no_grad():
                        final_v = agent.get_value(normalise(real_next[truncated_only], update=False))
                    rollout.final_values[t, truncated_only] = final_v.cpu().numpy()
                window.add(rollout.raw_obs[t], env_action, real_next, reward, terminated, truncated, physics)
                rollout.obs[t], rollout.actions[t], rollout.env_actions[t] = obs_t.cpu().numpy(), action, env_action
                rollout.logprobs[t], rollout.values[t] = logprob.cpu().numpy(), value.cpu().numpy()
                rollout.true_rewards[t], rollout.terminated[t], rollout.truncated[t] = reward, terminated, truncated
                rollout.next_obs[t] = real_next
                global_step += N
                rollout.steps[t] = global_step - N + np.arange(N)
                vec.episode_return += reward
                vec.episode_length += 1
                for i in np.flatnonzero(terminated | truncated):
                    run.episode(float(vec.episode_return[i]), int(vec.episode_length[i]))
                    vec.episode_return[i], vec.episode_length[i] = 0.0, 0
            with torch.no_grad():
                rollout.set_next_values(agent.get_value(normalise(vec.next_obs, update=False)).cpu().numpy())

            flat_obs, flat_act = rollout.raw_obs.reshape(batch_size, -1), rollout.env_actions.reshape(batch_size, -1)
            if exploring:
                # (2) unsupervised pre-exploration: k-NN state entropy of the next states among the window's states
                visited = torch.as_tensor(window.visited_states(), device=device)
                next_states = torch.as_tensor(rollout.next_obs.reshape(batch_size, -1), device=device)
                raw_rewards = state_entropy_reward(next_states, visited, explore_norm).cpu().numpy().reshape(T, N)
                if iteration + 1 == explore_iterations:
                    save_exploration(run.directory(), agent, window, global_step)
            else:
                # (3) the sessions due by now (queries from the window's segments); learn from the answers in
                loop.step(global_step)
                # (4) relabel the rollout with the learned reward (+ RUNE: β_t · ensemble std, t = each step's own)
                mean, std = predict_rewards(ensemble, flat_obs, flat_act)
                raw_rewards = rune.reward(mean.reshape(T, N), std.reshape(T, N), rollout.steps)

            # (5) GAE on the (scaled) rollout reward, then the PPO update; none while no reward model exists yet
            # (people may still be labelling the first session with --no-feedback-wait)
            if exploring or loop.has_reward:
                rewards = reward_scaler(raw_rewards, rollout.terminated | rollout.truncated)
                advantages, returns = rollout.advantages(rewards, args.gamma, args.gae_lambda)
                flat = {
                    "obs": rollout.obs.reshape(batch_size, -1),
                    "actions": rollout.actions.reshape(batch_size, -1),
                    "logprobs": rollout.logprobs.reshape(-1),
                    "advantages": advantages.reshape(-1),
                    "returns": returns.reshape(-1),
                    "values": rollout.values.reshape(-1),
                }
                batch = {k: torch.as_tensor(v, device=device) for k, v in flat.items()}
                train_metrics |= ppo_update(agent, optimizer, batch, args, rng_ppo)

            metrics = {"charts/learning_rate": optimizer.param_groups[0]["lr"], **train_metrics}
            if run.step_done(global_step, metrics, log_now=iteration == num_iterations - 1,
                             labels=loop.stats.total_labels):  # fmt: skip
                break
    return run.result


def cli(argv: list[str] | None = None) -> int:
    return run_cli(Args, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
