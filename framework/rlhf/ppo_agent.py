"""PPO for continuous actions as in CleanRL's ppo_continuous_action.py, shared by ppo.py and pref_ppo.py: the flags,
the actor-critic (2 × 64 tanh, orthogonal init, state-independent log-std), observation normalisation whose
statistics live in the agent's state dict (so they are saved with the model and used at evaluation), CleanRL's
reward scaling (by the running std of the discounted return), and the clipped-objective update.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.distributions.normal import Normal

log = logging.getLogger("cleanrlhf")


def num_rollouts(total_timesteps: int, batch_size: int) -> int:
    """Whole rollouts of ``batch_size`` steps that cover ``total_timesteps``, rounded up so that a run takes at least
    the steps asked for (Stable-Baselines3's ``learn`` also ends on the first whole rollout past its budget); a budget
    that is not a multiple of a rollout is said once, not rounded silently (issue 9, item 12)."""
    rollouts = -(-total_timesteps // batch_size)
    if rollouts * batch_size != total_timesteps:
        log.info(
            "--total-timesteps %d is not a multiple of one rollout (--num-envs × --num-steps = %d): running %d "
            "rollouts, %d steps",
            total_timesteps, batch_size, rollouts, rollouts * batch_size,
        )  # fmt: skip
    return rollouts


@dataclass
class PPOArgs:
    learning_rate: float = 3e-4
    """Adam learning rate of the actor-critic"""
    num_envs: int = 1
    """parallel environments (gymnasium SyncVectorEnv)"""
    num_steps: int = 2048
    """steps per environment per rollout"""
    anneal_lr: bool = True
    """anneal the learning rate linearly to 0 over the run"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """λ of generalised advantage estimation"""
    num_minibatches: int = 32
    """minibatches per epoch (minibatch size = num_envs * num_steps / num_minibatches)"""
    update_epochs: int = 10
    """epochs over each rollout"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.2
    """surrogate clipping coefficient"""
    clip_vloss: bool = True
    """clip the value loss as in the PPO paper's implementation"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """global gradient-norm clipping"""
    target_kl: float | None = None
    """stop an update's epochs early once the approximate KL exceeds this (None: never)"""

    def check(self) -> None:
        """Flag checks; ValueError naming the flag."""
        for name in ("learning_rate", "num_envs", "num_steps", "num_minibatches", "update_epochs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise ValueError(
                f"--num-minibatches ({self.num_minibatches}) must divide --num-envs × --num-steps "
                f"({self.num_envs * self.num_steps})"
            )
        if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError("--gamma must be in (0, 1] and --gae-lambda in [0, 1]")
        if self.clip_coef <= 0 or self.max_grad_norm <= 0:
            raise ValueError("--clip-coef and --max-grad-norm must be positive")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ValueError(f"--target-kl must be positive, got {self.target_kl}")


class RunningMeanStd(nn.Module):
    """Running mean/variance over batches (Chan et al.), in float64 buffers so they are part of the state dict."""

    mean: torch.Tensor  # buffers, declared for the type checker (nn.Module's attribute lookup is untyped)
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, shape: tuple[int, ...] = ()):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: np.ndarray) -> None:
        """x (B, *shape)."""
        t = torch.as_tensor(np.asarray(x), dtype=torch.float64, device=self.mean.device)
        batch_mean, batch_var, n = t.mean(0), t.var(0, unbiased=False), t.shape[0]
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total) / total)
        self.count += n


class ObsNormalizer(RunningMeanStd):
    """(x − mean) / sqrt(var + 1e-8) clipped to [−10, 10], as gymnasium's NormalizeObservation + CleanRL's clip."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return ((obs - self.mean.float()) / torch.sqrt(self.var.float() + 1e-8)).clamp(-10.0, 10.0)


class RewardScaler:
    """CleanRL's reward normalisation: divide rewards by the running std of each env's discounted return (not
    centred, so the sign of a reward is kept), clipped to [−10, 10]. The return restarts at every episode end."""

    def __init__(self, num_envs: int, gamma: float):
        self.gamma = gamma
        self.returns = np.zeros(num_envs, np.float64)
        self.rms = RunningMeanStd()

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """(T, N) rewards and episode ends of a rollout -> (T, N) scaled rewards; updates the statistics."""
        discounted = np.zeros(rewards.shape, np.float64)
        for t in range(len(rewards)):
            self.returns = self.returns * self.gamma + rewards[t]
            discounted[t] = self.returns
            self.returns = np.where(dones[t], 0.0, self.returns)
        self.rms.update(discounted.reshape(-1))
        return np.clip(rewards / np.sqrt(float(self.rms.var) + 1e-8), -10, 10).astype(np.float32)

    def reset(self) -> None:
        """Forget the statistics (PrefPPO: the learned reward has a scale of its own)."""
        self.returns[:] = 0.0
        self.rms = RunningMeanStd()

    def state_dict(self) -> dict:
        return {"returns": self.returns, **{k: v for k, v in self.rms.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.returns = np.asarray(state["returns"], np.float64)
        self.rms.load_state_dict({k: state[k] for k in ("mean", "var", "count")})


def _layer(in_dim: int, out_dim: int, std: float = float(np.sqrt(2))) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, 0.0)
    return layer


class PPOAgent(nn.Module):
    low: torch.Tensor  # action-bound buffers, declared for the type checker
    high: torch.Tensor

    def __init__(self, obs_dim: int, act_dim: int, low: np.ndarray, high: np.ndarray, hidden_dim: int = 64):
        super().__init__()
        self.obs_norm = ObsNormalizer((obs_dim,))
        self.critic = nn.Sequential(
            _layer(obs_dim, hidden_dim),
            nn.Tanh(),
            _layer(hidden_dim, hidden_dim),
            nn.Tanh(),
            _layer(hidden_dim, 1, 1.0),
        )
        self.actor_mean = nn.Sequential(
            _layer(obs_dim, hidden_dim),
            nn.Tanh(),
            _layer(hidden_dim, hidden_dim),
            nn.Tanh(),
            _layer(hidden_dim, act_dim, 0.01),
        )
        self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))

    def get_value(self, norm_obs: torch.Tensor) -> torch.Tensor:
        """(B, o) normalised observations -> (B,) values."""
        return self.critic(norm_obs).squeeze(-1)

    def get_action_and_value(self, norm_obs: torch.Tensor, action: torch.Tensor | None = None):
        """(B, o) -> action (B, a) (sampled unless given), log-prob (B,), entropy (B,), value (B,)."""
        mean = self.actor_mean(norm_obs)
        dist = Normal(mean, self.actor_logstd.expand_as(mean).exp())
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action).sum(1), dist.entropy().sum(1), self.get_value(norm_obs)

    def clip_action(self, action: np.ndarray) -> np.ndarray:
        """Actions are sampled from an unbounded Gaussian; the environment gets them clipped (CleanRL's ClipAction)."""
        return np.clip(action, self.low.cpu().numpy(), self.high.cpu().numpy())

    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """One raw observation (o,) -> a clipped action (a,), normalised with the stored statistics (not updated)."""
        x = self.obs_norm(torch.as_tensor(obs, dtype=torch.float32, device=self.low.device)[None])
        action = self.actor_mean(x) if deterministic else self.get_action_and_value(x)[0]
        return self.clip_action(action[0].cpu().numpy())


def ppo_update(
    agent: PPOAgent,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    args: PPOArgs,
    rng: np.random.Generator,
) -> dict[str, float]:
    """CleanRL's PPO update on a flattened rollout: obs (B, o) normalised, actions (B, a), logprobs, advantages,
    returns, values (B,). Returns ``losses/*`` and diagnostics (``charts/approx_kl``, clip fraction, explained var)."""
    size = batch["obs"].shape[0]
    minibatch = size // args.num_minibatches
    clipfracs, approx_kl, old_approx_kl = [], torch.zeros(()), torch.zeros(())
    for _ in range(args.update_epochs):
        order = rng.permutation(size)
        for start in range(0, size, minibatch):
            mb = torch.as_tensor(order[start : start + minibatch])
            _, newlogprob, entropy, newvalue = agent.get_action_and_value(batch["obs"][mb], batch["actions"][mb])
            logratio = newlogprob - batch["logprobs"][mb]
            ratio = logratio.exp()
            with torch.no_grad():
                old_approx_kl = (-logratio).mean()
                approx_kl = ((ratio - 1) - logratio).mean()
                clipfracs.append(float(((ratio - 1.0).abs() > args.clip_coef).float().mean()))
            adv = batch["advantages"][mb]
            if args.norm_adv:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)).mean()
            returns, old_values = batch["returns"][mb], batch["values"][mb]
            if args.clip_vloss:
                clipped = old_values + (newvalue - old_values).clamp(-args.clip_coef, args.clip_coef)
                v_loss = 0.5 * torch.max((newvalue - returns) ** 2, (clipped - returns) ** 2).mean()
            else:
                v_loss = 0.5 * ((newvalue - returns) ** 2).mean()
            entropy_loss = entropy.mean()
            loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
            optimizer.step()
        if args.target_kl is not None and approx_kl > args.target_kl:
            break
    y_pred, y_true = batch["values"].cpu().numpy(), batch["returns"].cpu().numpy()
    var_y = np.var(y_true)
    return {
        "losses/value_loss": float(v_loss.detach()),
        "losses/policy_loss": float(pg_loss.detach()),
        "charts/entropy": float(entropy_loss.detach()),  # the policy entropy is not a loss (SPEC §9)
        "charts/old_approx_kl": float(old_approx_kl),
        "charts/approx_kl": float(approx_kl),
        "charts/clipfrac": float(np.mean(clipfracs)),
        "charts/explained_variance": float("nan") if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y),
    }
