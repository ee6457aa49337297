"""PrefPPO (Lee et al. 2021, B-Pref): PPO trained on a reward ensemble learned from a teacher's preferences.

Read top to bottom: flags, checks, set-up, then per iteration: (1) a rollout in --num-envs environments, whose
transitions (with MuJoCo states, to re-render clips) also go into a window of recent rollouts; (2) during
unsupervised pre-exploration, the rollout's reward is the k-NN state entropy; afterwards (3) feedback sessions on
the schedule — queries drawn from segments of the window, labels stored with their segments' data, the reward
ensemble trained (optionally with SURF) — and (4) the rollout relabelled with the learned reward (+ RUNE's
bonus) before GAE; (5) the PPO update; (6) logging, evaluation on the true return, early stopping, checkpoints.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro

from rlhf.checkpoint import CheckpointError, load_state, rng_state, save_state
from rlhf.cli import run_cli
from rlhf.config import (
    ConfigError,
    ExplorationArgs,
    FeedbackArgs,
    GeneralArgs,
    RuneArgs,
    SurfArgs,
    check_feedback_args,
)
from rlhf.envs import check_render_mode, configure_headless_rendering, env_info, get_physics_state, make_env
from rlhf.evaluate import EarlyStopping, evaluate_policy
from rlhf.exploration import RunningStd, state_entropy_reward
from rlhf.feedback import FeedbackStats, learn_from_answers, pearson, session_config
from rlhf.ppo_agent import PPOAgent, PPOArgs, RewardScaler, check_ppo_args, ppo_update
from rlhf.preferences import PreferenceDataset
from rlhf.queries import select_queries
from rlhf.reward_model import RewardEnsemble, predict_rewards
from rlhf.rollout import RolloutBuffer, RolloutWindow, final_observations, make_vector_env
from rlhf.schedule import session_steps
from rlhf.surf import Surf, check_surf_args, rune_reward, surf_config
from rlhf.teacher_factory import check_server_url, feedback_report, human_teacher, simulated_teacher
from rlhf.tracking import (
    EpisodeWindow,
    ProgressBar,
    Tracker,
    make_run_dir,
    recorded_args,
    run_name,
    seed_everything,
    select_device,
    setup_logging,
)
from rlhf.video import EvaluationRecorder, QueryClipRecorder

log = logging.getLogger("cleanrlhf")


@dataclass
class Args(PPOArgs, SurfArgs, RuneArgs, ExplorationArgs, FeedbackArgs, GeneralArgs):
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


def validate(args: Args) -> None:
    """Flag checks that need no environment; raise ValueError naming the flag."""
    check_feedback_args(args)
    check_surf_args(args)
    check_ppo_args(args)
    check_render_mode(args.render_mode)
    if args.query_window_rollouts <= 0:
        raise ValueError(f"--query-window-rollouts must be positive, got {args.query_window_rollouts}")
    batch = args.num_envs * args.num_steps
    explore = args.total_explore_steps if args.unsupervised_exploration else 0
    if -(-explore // batch) * batch >= (args.total_timesteps // batch) * batch:
        raise ValueError(
            f"--total-explore-steps ({explore}) leaves no rollout of --total-timesteps ({args.total_timesteps}) "
            f"for learning from feedback (one rollout = --num-envs × --num-steps = {batch} steps)"
        )
    if args.teacher_feedback_mode == "human":
        check_server_url(args.feedback_server_url)


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in (before, after] (steps advance by a whole rollout at a time)."""
    return after // every > before // every


def main(args: Args) -> dict[str, float]:
    configure_headless_rendering(args.render_mode)
    setup_logging(args.log_level)
    try:  # everything that can reject the flags runs before the run directory exists
        validate(args)
        exp_name = args.exp_name or Path(__file__).stem
        envs = make_vector_env(args.env_id, args.num_envs, args.seed, "human" if args.render_mode == "human" else None)
        info = env_info(envs.envs[0])
        H, N, T = args.trajectory_length, args.num_envs, args.num_steps
        if min(info.max_episode_steps, args.query_window_rollouts * T) < H:
            raise ValueError(f"--trajectory-length {H} is longer than an episode or the rollout window")
        batch_size = N * T
        num_iterations = args.total_timesteps // batch_size
        explore_steps = args.total_explore_steps if args.unsupervised_exploration else 0
        explore_iterations = -(-explore_steps // batch_size)  # rollouts that start before exploration ends
        num_sessions = args.teacher_feedback_total_queries // args.teacher_feedback_num_queries_per_session
        # a session runs after the first rollout that ends at or after its step; the last rollout ends at the end
        sessions = session_steps(
            args.teacher_feedback_schedule,
            explore_iterations * batch_size,
            num_iterations * batch_size + 1,
            num_sessions,
            args.teacher_feedback_exponential_lambda,
        )
        video_size = {"width": 240, "height": 240} if args.capture_video else {}
        eval_env = make_env(args.env_id, args.seed + 1, "rgb_array" if args.capture_video else None, **video_size)

        if args.threads:
            torch.set_num_threads(args.threads)
        seed_everything(args.seed, args.torch_deterministic)
        device = select_device(args.cuda)
        rng_ppo, rng_queries, rng_teacher = (
            np.random.default_rng(s) for s in np.random.SeedSequence(args.seed).spawn(3)
        )
        np_rngs = {"ppo": rng_ppo, "queries": rng_queries, "teacher": rng_teacher}

        agent = PPOAgent(info.obs_dim, info.act_dim, info.action_low, info.action_high).to(device)
        optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
        ensemble = RewardEnsemble.from_args(args, info.obs_dim, info.act_dim).to(device)
        reward_optimizer = torch.optim.Adam(ensemble.parameters(), lr=args.teacher_learning_rate)
        rollout = RolloutBuffer(T, N, info.obs_dim, info.act_dim)
        segment_window = RolloutWindow(
            N, args.query_window_rollouts * T, info.obs_dim, info.act_dim, info.physics_state_dim
        )
        prefs = PreferenceDataset(H, info.obs_dim, info.act_dim, info.physics_state_dim)
        session_cfg = session_config(args)
        stats = FeedbackStats()
        surf = Surf(surf_config(args), H) if args.surf else None

        start_iteration = 0
        if args.exploration_load:
            try:
                agent.load_state_dict(load_state(Path(args.path_to_model).with_suffix(""))["agent"])
                segment_window.load_state_dict(load_state(Path(args.path_to_replay_buffer).with_suffix("")))
            except (CheckpointError, KeyError, RuntimeError) as e:
                raise ValueError(f"--exploration-load: cannot load the exploration checkpoint: {e}") from e
            start_iteration = explore_iterations
            log.info("loaded %d exploration transitions; skipping exploration", segment_window.size)
        run_dir = make_run_dir(args.runs_dir, run_name(args.env_id, exp_name, args.seed))
        server = None
        if args.teacher_feedback_mode == "human":
            teacher, server = human_teacher(args, run_dir, completed_sessions=set())
        else:
            teacher = simulated_teacher(args, rng_teacher)
    except ValueError as e:
        if "run_dir" in locals() and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # nothing was started
        raise ConfigError(str(e)) from e

    tracker = Tracker(run_dir, args, args.track, args.wandb_project_name, args.wandb_entity)
    log.info("run directory %s; feedback sessions after steps %s", run_dir, sessions.tolist())

    def normalise(obs: np.ndarray, update: bool) -> torch.Tensor:
        if update:
            agent.obs_norm.update(obs)
        return agent.obs_norm(torch.as_tensor(obs, dtype=torch.float32, device=device))

    query_clips = QueryClipRecorder(run_dir / "videos" / "queries", args.env_id) if args.capture_video else None
    eval_video = (
        EvaluationRecorder(run_dir / "videos" / "eval", eval_env, tracker.eval_video) if args.capture_video else None
    )

    @functools.lru_cache(maxsize=1)  # the final evaluation reuses one that just ran at the same step
    def evaluate(step: int) -> dict[str, float]:
        seed = args.seed + 10_000 + step
        return evaluate_policy(agent.act, eval_env, args.evaluation_episodes, seed, step, eval_video)

    def learn(answered, step: int, idle_seconds: float) -> None:
        """Store the answered sessions' labels (with their segments' data) and train the reward ensemble."""
        t0 = time.time()
        for answers in answered:
            if query_clips:
                query_clips.record(answers.seg_a, answers.seg_b, answers.labels, answers.session, step)
        labelled = len(prefs) + sum(int((~np.isnan(a.labels)).sum()) for a in answered)
        hooks = surf.prepare(segment_window, ensemble, labelled, rng_queries) if surf else {}  # SURF's hooks
        metrics = learn_from_answers(answered, prefs, stats, ensemble, reward_optimizer, session_cfg, rng_queries,
                                     **hooks)  # fmt: skip
        if surf:
            metrics["reward_model/surf_confident_fraction"] = surf.last_confident_fraction
        metrics["feedback/session_seconds"] = time.time() - t0
        metrics["feedback/wait_seconds"] = idle_seconds  # training stood still waiting for answers
        if getattr(teacher, "render_seconds", None):
            metrics["feedback/clip_render_seconds"] = float(np.mean(teacher.render_seconds))
        tracker.scalars({**metrics, **stats.as_scalars()}, step)
        log.info("step %d: %d labels, reward model val accuracy %.3f", step, stats.total_labels,
                 metrics["reward_model/val_accuracy"])  # fmt: skip

    # ---- the loop ---------------------------------------------------------------------------------------------
    next_obs, _ = envs.reset(seed=args.seed)
    episode_return, episode_length = np.zeros(N), np.zeros(N, np.int64)
    reward_scaler = RewardScaler(N, args.gamma)
    explore_norm = RunningStd()
    next_session = reward_updates = 0
    train_metrics: dict[str, float] = {}
    waiting = False  # sessions were just asked and --feedback-wait holds training until they are answered
    last_eval = float("nan")
    early_stopping = EarlyStopping(
        args.early_stopping, args.early_stopping_step, args.early_stop_patience, args.early_stopping_mean
    )
    global_step = start_iteration * batch_size
    window = EpisodeWindow(global_step)
    bar = ProgressBar(num_iterations * batch_size, initial=global_step, disable=not args.progress_bar)
    final_metrics: dict[str, float] = {}
    completed = interrupted = False
    try:
        for iteration in range(start_iteration, num_iterations):
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = (1.0 - iteration / num_iterations) * args.learning_rate
            start_step = global_step
            exploring = iteration < explore_iterations

            # (1) rollout; every transition also goes into the segment window, with the MuJoCo state of its obs
            for t in range(T):
                rollout.raw_obs[t] = next_obs
                with torch.no_grad():
                    obs_t = normalise(next_obs, update=True)
                    action, logprob, _, value = agent.get_action_and_value(obs_t)
                action = action.cpu().numpy()
                env_action = agent.clip_action(action)
                physics = [get_physics_state(env) for env in envs.envs]
                next_obs, reward, terminated, truncated, infos = envs.step(env_action)
                real_next = final_observations(next_obs, infos)
                truncated_only = truncated & ~terminated
                if truncated_only.any():  # bootstrap value of the true final observation
                    with torch.no_grad():
                        final_v = agent.get_value(normalise(real_next[truncated_only], update=False))
                    rollout.final_values[t, truncated_only] = final_v.cpu().numpy()
                segment_window.add(rollout.raw_obs[t], env_action, real_next, reward, terminated, truncated, physics)
                rollout.obs[t], rollout.actions[t], rollout.env_actions[t] = obs_t.cpu().numpy(), action, env_action
                rollout.logprobs[t], rollout.values[t] = logprob.cpu().numpy(), value.cpu().numpy()
                rollout.true_rewards[t], rollout.terminated[t], rollout.truncated[t] = reward, terminated, truncated
                rollout.next_obs[t] = real_next
                global_step += N
                rollout.steps[t] = global_step - N + np.arange(N)
                episode_return += reward
                episode_length += 1
                for i in np.flatnonzero(terminated | truncated):
                    window.episode(float(episode_return[i]), int(episode_length[i]))
                    episode_return[i], episode_length[i] = 0.0, 0
            with torch.no_grad():
                rollout.set_next_values(agent.get_value(normalise(next_obs, update=False)).cpu().numpy())

            flat_obs, flat_act = rollout.raw_obs.reshape(batch_size, -1), rollout.env_actions.reshape(batch_size, -1)
            if exploring:
                # (2) unsupervised pre-exploration: k-NN state entropy of the next states among the window's states
                visited = torch.as_tensor(segment_window.visited_states(), device=device)
                next_states = torch.as_tensor(rollout.next_obs.reshape(batch_size, -1), device=device)
                raw_rewards = state_entropy_reward(next_states, visited, explore_norm).cpu().numpy().reshape(T, N)
                if iteration + 1 == explore_iterations:
                    exploration_dir = run_dir / "exploration"
                    save_state(exploration_dir / "agent", {"agent": agent.state_dict(), "step": global_step})
                    save_state(exploration_dir / "replay_buffer", segment_window.state_dict())
            else:
                # (3) ask the sessions due by now (queries from the window's segments), learn from the answers in
                while next_session < len(sessions) and global_step >= sessions[next_session]:
                    pool = session_cfg.num_queries * session_cfg.pool_multiplier
                    seg_a, seg_b = select_queries(segment_window, ensemble, session_cfg.num_queries, pool, H,
                                                  session_cfg.strategy, rng_queries)  # fmt: skip
                    teacher.submit(seg_a, seg_b, next_session)
                    next_session, waiting = next_session + 1, args.feedback_wait
                if next_session > 0:  # a human's answers may come in at any time
                    t_wait = time.time()
                    answered = teacher.collect(wait=waiting, timeout=args.feedback_timeout)
                    waiting = False
                    if answered:
                        learn(answered, global_step, time.time() - t_wait)
                        if reward_updates == 0:
                            reward_scaler = RewardScaler(N, args.gamma)  # the learned reward has its own scale
                        reward_updates += 1
                # (4) relabel the rollout with the learned reward (+ RUNE: β_t · ensemble std, t = each step's own)
                mean, std = predict_rewards(ensemble, flat_obs, flat_act)
                mean, std = mean.reshape(T, N), std.reshape(T, N)
                rune = args.rune_beta, args.rune_beta_decay
                raw_rewards = rune_reward(mean, std, *rune, rollout.steps) if args.rune else mean
                train_metrics["reward_model/pearson"] = pearson(mean.reshape(-1), rollout.true_rewards.reshape(-1))
                train_metrics["reward_model/ensemble_std"] = float(std.mean())

            # (5) GAE on the (scaled) rollout reward, then the PPO update; none while no reward model exists yet
            # (people may still be labelling the first session with --no-feedback-wait)
            if exploring or reward_updates > 0:
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

            # (6) logging, evaluation, early stopping
            if crossed(start_step, global_step, args.log_frequency) or iteration == num_iterations - 1:
                lr = {"charts/learning_rate": optimizer.param_groups[0]["lr"]}
                tracker.scalars({**window.flush(global_step), **lr, **train_metrics}, global_step)
            if crossed(start_step, global_step, args.evaluation_frequency):
                eval_metrics = evaluate(global_step)
                last_eval = eval_metrics["eval/mean_return"]
                tracker.scalars(eval_metrics, global_step)
                if early_stopping.should_stop(global_step, last_eval):
                    log.info("early stopping at step %d (eval return %.1f)", global_step, last_eval)
                    break
            bar.update(batch_size, labels=stats.total_labels, eval=last_eval)
        completed = True
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted at step %d; saving a checkpoint", global_step)
    finally:
        bar.close()
        if completed:
            final_metrics.update(evaluate(global_step))
            tracker.scalars(final_metrics, global_step)
        if completed or interrupted:
            state = {
                "algorithm": "pref_ppo",
                "env_id": args.env_id,
                "step": global_step,
                "next_session": next_session,
                "reward_updates": reward_updates,
                "agent": agent.state_dict(),  # includes the observation-normalisation statistics
                "optimizer": optimizer.state_dict(),
                "reward_scaler": reward_scaler.state_dict(),
                "reward_ensemble": ensemble.state_dict(),
                "reward_optimizer": reward_optimizer.state_dict(),
                "preferences": prefs.state_dict(),
                "feedback_stats": dict(stats.__dict__),
                "rng": rng_state(np_rngs),
                "args": recorded_args(args),
            }
            save_state(run_dir / "checkpoints" / "final", state)
            log.info("checkpoint saved to %s", run_dir / "checkpoints" / "final")
        tracker.scalars({**stats.as_scalars(), **feedback_report(teacher, stats, completed)}, global_step)
        tracker.close()
        teacher.close()
        if query_clips:
            query_clips.close()
        if server:
            server.stop()
        envs.close()
        eval_env.close()
    if interrupted:
        raise KeyboardInterrupt
    final_metrics.update({**stats.as_scalars(), "step": float(global_step), "run_dir": str(run_dir)})
    return final_metrics


def cli(argv: list[str] | None = None) -> int:
    return run_cli(Args, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
