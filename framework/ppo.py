"""PPO on the true environment reward: the oracle baseline for pref_ppo.py, with the same networks, rollouts,
observation normalisation, evaluation, logging and checkpoints (CleanRL's ppo_continuous_action.py).

Read top to bottom: flags, set-up, then per iteration: (1) a rollout of --num-steps steps in --num-envs
environments, (2) rewards scaled and GAE (terminations do not bootstrap, truncations bootstrap from V(final
observation)), (3) the clipped PPO update; the run (rlhf.run) logs, evaluates, stops early and checkpoints.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch

from rlhf.cli import run_cli
from rlhf.config import GeneralArgs, ResumeArgs, check_flags
from rlhf.env_state import VectorEnvState
from rlhf.envs import env_info
from rlhf.ppo_agent import PPOAgent, PPOArgs, RewardScaler, num_rollouts, ppo_update
from rlhf.rollout import RolloutBuffer, final_observations, make_vector_env
from rlhf.run import Run


@dataclass
class Args(ResumeArgs, PPOArgs, GeneralArgs):
    """PPO on the true reward."""


def main(args: Args) -> dict[str, float]:
    run = Run(args, __file__)
    args = run.args
    with run.checking_flags():
        check_flags(args)
        envs = make_vector_env(args.env_id, args.num_envs, args.seed, "human" if args.render_mode == "human" else None)
        eval_env = run.make_eval_env()
        run.close_at_end(envs, eval_env)
        info = env_info(envs.envs[0])
        device = run.torch_setup()
        (rng,) = run.generators("ppo")
        agent = PPOAgent(info.obs_dim, info.act_dim, info.action_low, info.action_high).to(device)
        optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
        N, T = args.num_envs, args.num_steps
        batch_size = N * T
        num_iterations = num_rollouts(args.total_timesteps, batch_size)
        rollout = RolloutBuffer(T, N, info.obs_dim, info.act_dim)
        reward_scaler = RewardScaler(N, args.gamma)
        next_obs, _ = envs.reset(seed=args.seed)
        vec = VectorEnvState(envs, next_obs)  # the environments' state between rollouts
        run.register("agent", agent)  # includes the observation-normalisation statistics
        run.register("optimizer", optimizer)
        run.register("reward_scaler", reward_scaler)
        run.register("envs", vec)
        global_step = run.begin(eval_env, agent.act, num_iterations * batch_size)

    def normalise(obs: np.ndarray, update: bool) -> torch.Tensor:
        if update:
            agent.obs_norm.update(obs)
        return agent.obs_norm(torch.as_tensor(obs, dtype=torch.float32, device=device))

    with run:
        for iteration in range(global_step // batch_size, num_iterations):
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = (1.0 - iteration / num_iterations) * args.learning_rate

            # (1) rollout
            for t in range(T):
                rollout.raw_obs[t] = vec.next_obs
                with torch.no_grad():
                    obs_t = normalise(vec.next_obs, update=True)
                    action, logprob, _, value = agent.get_action_and_value(obs_t)
                action = action.cpu().numpy()
                env_action = agent.clip_action(action)
                vec.next_obs, reward, terminated, truncated, infos = envs.step(env_action)
                real_next = final_observations(vec.next_obs, infos)
                truncated_only = truncated & ~terminated
                if truncated_only.any():  # bootstrap value of the true final observation
                    with torch.no_grad():
                        final_v = agent.get_value(normalise(real_next[truncated_only], update=False))
                    rollout.final_values[t, truncated_only] = final_v.cpu().numpy()
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

            # (2) rewards and advantages
            rewards = reward_scaler(rollout.true_rewards, rollout.terminated | rollout.truncated)
            advantages, returns = rollout.advantages(rewards, args.gamma, args.gae_lambda)

            # (3) PPO update on the flattened rollout
            flat = {
                "obs": rollout.obs.reshape(batch_size, -1),
                "actions": rollout.actions.reshape(batch_size, -1),
                "logprobs": rollout.logprobs.reshape(-1),
                "advantages": advantages.reshape(-1),
                "returns": returns.reshape(-1),
                "values": rollout.values.reshape(-1),
            }
            batch = {k: torch.as_tensor(v, device=device) for k, v in flat.items()}
            train_metrics = ppo_update(agent, optimizer, batch, args, rng)

            metrics = {"charts/learning_rate": optimizer.param_groups[0]["lr"], **train_metrics}
            if run.step_done(global_step, metrics, log_now=iteration == num_iterations - 1):
                break
    return run.result


def cli(argv: list[str] | None = None) -> int:
    return run_cli(Args, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
