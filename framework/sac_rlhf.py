"""PEBBLE (Lee et al. 2021): SAC on a reward ensemble learned from a teacher's preferences between segments.

Read top to bottom: flags, set-up, then the loop: (1) unsupervised pre-exploration on a state-entropy reward,
(2) acting with the policy, (3) feedback sessions on the schedule (rlhf.feedback_loop: select queries from the
replay buffer, ask the teacher — simulated, or people in the browser — train the reward ensemble (+ SURF),
relabel the replay buffer), (4) SAC updates on the learned reward (+ RUNE's bonus). The run (rlhf.run) logs,
evaluates on the true return, stops early and checkpoints.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import torch

from rlhf.agent import SAC, SACConfig
from rlhf.agent_data import ReplayData
from rlhf.cli import run_cli
from rlhf.config import ExplorationArgs, FeedbackArgs, GeneralArgs, ResumeArgs, RuneArgs, SACArgs, SurfArgs, check_flags
from rlhf.env_state import EpisodeBoundaryState
from rlhf.envs import env_info, get_physics_state, make_env
from rlhf.exploration import RunningStd, load_exploration, save_exploration, state_entropy_reward
from rlhf.feedback_loop import FeedbackLoop, SessionConfig, keep_preferences, make_teacher
from rlhf.preferences import PreferenceDataset
from rlhf.replay import ReplayBuffer
from rlhf.reward_model import RewardEnsemble
from rlhf.run import Run
from rlhf.rune import Rune
from rlhf.schedule import session_steps
from rlhf.surf import Surf, surf_config
from rlhf.tensors import to_tensor
from rlhf.video import QueryClipRecorder

log = logging.getLogger("cleanrlhf")


@dataclass
class Args(ResumeArgs, SurfArgs, RuneArgs, ExplorationArgs, FeedbackArgs, SACArgs, GeneralArgs):
    """PEBBLE: SAC on a reward learned from preferences."""


def check(args: Args, max_episode_steps: int) -> None:
    """Flag combinations of PEBBLE; ValueError naming the flags."""
    if args.explore_steps() >= args.total_timesteps:
        raise ValueError(
            f"--total-explore-steps ({args.explore_steps()}) leaves no steps of --total-timesteps "
            f"({args.total_timesteps}) for learning from feedback"
        )
    if 2 * max_episode_steps < args.trajectory_length:  # segments would be mostly a frozen last frame
        raise ValueError(
            f"--trajectory-length {args.trajectory_length} is longer than {args.env_id}'s episodes "
            f"({max_episode_steps} steps) by more than twice"
        )
    if max_episode_steps < args.trajectory_length:
        log.warning("--trajectory-length %d is longer than %s's episodes (%d steps): each segment is one whole "
                    "episode, padded with its last frame", args.trajectory_length, args.env_id, max_episode_steps)  # fmt: skip


def main(args: Args) -> dict[str, float]:
    run = Run(args, __file__)
    args = run.args
    with run.checking_flags():
        check_flags(args)
        env = make_env(args.env_id, seed=args.seed, render_mode="human" if args.render_mode == "human" else None)
        eval_env = run.make_eval_env()
        run.close_at_end(env, eval_env)
        info = env_info(env)
        check(args, info.max_episode_steps)
        H, explore_steps = args.trajectory_length, args.explore_steps()
        num_sessions = args.teacher_feedback_total_queries // args.teacher_feedback_num_queries_per_session
        sessions = session_steps(args.teacher_feedback_schedule, max(explore_steps, args.learning_starts),
                                 args.total_timesteps, num_sessions, args.teacher_feedback_exponential_lambda)  # fmt: skip
        device = run.torch_setup()
        rng_buffer, rng_queries, rng_teacher = run.generators("buffer", "queries", "teacher")

        agent = SAC(info.obs_dim, info.act_dim, info.action_low, info.action_high, SACConfig.from_args(args))
        agent = agent.to(device)
        ensemble = RewardEnsemble.from_args(args, info.obs_dim, info.act_dim).to(device)
        reward_optimizer = torch.optim.Adam(ensemble.parameters(), lr=args.teacher_learning_rate)
        rb = ReplayBuffer(args.buffer_size, info.obs_dim, info.act_dim, info.physics_state_dim,
                          args.reward_net_ensemble_size)  # fmt: skip
        # PEBBLE resets the critics after the first reward update: they estimated the exploration reward
        data = ReplayData(rb, ensemble, after_first_update=agent.reset_critics if explore_steps else None)
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

        start_step = 0
        if args.exploration_load and not run.resumed:
            load_exploration(args, agent, rb)
            start_step = explore_steps
            if rb.size < H:
                raise ValueError(f"the loaded replay buffer holds {rb.size} transitions, fewer than one segment")
            log.info("loaded %d exploration transitions; skipping %d exploration steps", rb.size, explore_steps)
        for name, component in (("agent", agent), ("optimizers", agent.optimizers), ("feedback", loop),
                                ("explore_norm", explore_norm), ("env", EpisodeBoundaryState(env))):  # fmt: skip
            run.register(name, component)
        run.register("replay_buffer", rb, large=True)
        start_step = run.begin(eval_env, lambda o: agent.act(o, deterministic=True), args.total_timesteps, start_step)
        loop.teacher = make_teacher(args, run, loop, rng_teacher)
        run.final_scalars(loop.final_scalars)
        log.info("feedback sessions at steps %s", sessions.tolist())

    need_reset = True  # the environment is reset at the top of the loop, so checkpoints fall between episodes
    seed_reset = not run.resumed  # a resumed environment continues from its restored random state instead
    episode_id = int(rb.episode_id[: rb.size].max()) + 1 if rb.size else 0
    episode_step, episode_return = 0, 0.0
    train_metrics: dict[str, torch.Tensor] = {}
    with run:
        for step in range(start_step, args.total_timesteps):
            if need_reset:
                obs, _ = env.reset(seed=args.seed if seed_reset else None)
                need_reset = seed_reset = False
            exploring = step < explore_steps
            # (2) act: random actions only before any agent exists to act with
            if exploring:
                random_phase = step < args.explore_learning_starts
            else:
                random_phase = not args.unsupervised_exploration and step < args.learning_starts
            action = env.action_space.sample() if random_phase else agent.act(obs)
            physics_state = get_physics_state(env)  # the state of ``obs``, to re-render this step later
            next_obs, reward, terminated, truncated, _ = env.step(action)
            rb.add(obs, action, next_obs, reward, terminated, truncated, episode_id, episode_step, physics_state)
            episode_return += float(reward)
            episode_step += 1
            obs = next_obs
            if terminated or truncated:
                run.episode(episode_return, episode_step)
                need_reset, episode_id, episode_step, episode_return = True, episode_id + 1, 0, 0.0

            if exploring:
                # (1) unsupervised pre-exploration: SAC on the normalised k-NN state-entropy reward
                if step >= args.explore_learning_starts:
                    batch = rb.sample_any(args.explore_batch_size, rng_buffer)
                    t = {k: to_tensor(v, device) for k, v in batch.items()}
                    visited = to_tensor(rb.next_obs[: rb.size], device)
                    r_int = state_entropy_reward(t["next_obs"], visited, explore_norm)
                    train_metrics |= agent.update(t["obs"], t["actions"], r_int, t["next_obs"], t["terminated"], step)
                if step + 1 == explore_steps:
                    save_exploration(run.directory(), agent, rb, step + 1)
            else:
                # (3) feedback sessions on the schedule: ask, and learn from the answers when they are in
                loop.step(step)
                # (4) SAC update on the learned reward (+ RUNE's bonus), once there is one
                if loop.has_reward:
                    data.label_new_transitions()
                    batch = rb.sample(args.batch_size, rng_buffer)
                    t = {k: to_tensor(v, device) for k, v in batch.items()}
                    rewards = rune.reward(t["reward_mean"], t["reward_std"], step)
                    train_metrics |= agent.update(t["obs"], t["actions"], rewards, t["next_obs"], t["terminated"], step)

            metrics = {"charts/alpha": agent.alpha, **train_metrics}
            if run.step_done(step + 1, metrics, boundary=need_reset, labels=loop.stats.total_labels):
                break
    return run.result


def cli(argv: list[str] | None = None) -> int:
    return run_cli(Args, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
