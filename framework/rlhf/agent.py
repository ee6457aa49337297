"""Soft Actor-Critic (Haarnoja et al. 2018) as in CleanRL's sac_continuous_action.py, shared by sac.py,
sac_rlhf.py and the pre-exploration phase, so that the oracle baseline and PEBBLE use identical networks/updates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlhf.config import SACArgs
from rlhf.registry import Stateful
from rlhf.tensors import to_tensor

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def _trunk(in_dim: int, hidden_dim: int, hidden_layers: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(hidden_layers):
        layers += [nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim), nn.ReLU()]
    return layers


class SoftQNetwork(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int = 256, hidden_layers: int = 2):
        super().__init__()
        self.net = nn.Sequential(*_trunk(obs_dim + act_dim, hidden_dim, hidden_layers), nn.Linear(hidden_dim, 1))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, act], -1))  # (B, 1)


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy rescaled to the action bounds."""

    action_scale: torch.Tensor  # buffers, declared for the type checker (nn.Module's attribute lookup is untyped)
    action_bias: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        low: np.ndarray,
        high: np.ndarray,
        hidden_dim: int = 256,
        hidden_layers: int = 2,
    ):
        super().__init__()
        self.trunk = nn.Sequential(*_trunk(obs_dim, hidden_dim, hidden_layers))
        self.fc_mean = nn.Linear(hidden_dim, act_dim)
        self.fc_logstd = nn.Linear(hidden_dim, act_dim)
        self.register_buffer("action_scale", torch.as_tensor((high - low) / 2.0, dtype=torch.float32))
        self.register_buffer("action_bias", torch.as_tensor((high + low) / 2.0, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(obs)
        log_std = torch.tanh(self.fc_logstd(h))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        return self.fc_mean(h), log_std

    def get_action(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sampled action, its log-probability (B, 1), deterministic mean action)."""
        mean, log_std = self(obs)
        normal = torch.distributions.Normal(mean, log_std.exp())
        x = normal.rsample()
        y = torch.tanh(x)
        action = y * self.action_scale + self.action_bias
        log_prob = normal.log_prob(x) - torch.log(self.action_scale * (1 - y.pow(2)) + 1e-6)
        return action, log_prob.sum(1, keepdim=True), torch.tanh(mean) * self.action_scale + self.action_bias


@dataclass
class SACConfig:
    """SAC's settings; the defaults are the flags' (rlhf.config.SACArgs), see there for their meaning."""

    gamma: float = SACArgs.gamma
    tau: float = SACArgs.tau
    policy_lr: float = SACArgs.policy_lr
    q_lr: float = SACArgs.q_lr
    policy_frequency: int = SACArgs.policy_frequency
    target_network_frequency: int = SACArgs.target_network_frequency
    alpha: float = SACArgs.alpha
    autotune: bool = SACArgs.autotune
    hidden_dim: int = SACArgs.actor_and_q_net_hidden_dim
    hidden_layers: int = SACArgs.actor_and_q_net_hidden_layers

    @classmethod
    def from_args(cls, args) -> SACConfig:
        """From the flags of rlhf.config.SACArgs."""
        return cls(gamma=args.gamma, tau=args.tau, policy_lr=args.policy_lr, q_lr=args.q_lr,
                   policy_frequency=args.policy_frequency, target_network_frequency=args.target_network_frequency,
                   alpha=args.alpha, autotune=args.autotune, hidden_dim=args.actor_and_q_net_hidden_dim,
                   hidden_layers=args.actor_and_q_net_hidden_layers)  # fmt: skip


class SAC(nn.Module):
    """Actor, twin critics, their targets, the temperature and the optimizers, updated as in CleanRL."""

    def __init__(self, obs_dim: int, act_dim: int, low: np.ndarray, high: np.ndarray, cfg: SACConfig):
        super().__init__()
        self.cfg = cfg
        self.actor = Actor(obs_dim, act_dim, low, high, cfg.hidden_dim, cfg.hidden_layers)
        self.qf1 = SoftQNetwork(obs_dim, act_dim, cfg.hidden_dim, cfg.hidden_layers)
        self.qf2 = SoftQNetwork(obs_dim, act_dim, cfg.hidden_dim, cfg.hidden_layers)
        self.qf1_target = SoftQNetwork(obs_dim, act_dim, cfg.hidden_dim, cfg.hidden_layers)
        self.qf2_target = SoftQNetwork(obs_dim, act_dim, cfg.hidden_dim, cfg.hidden_layers)
        self.target_entropy = -float(act_dim)
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(cfg.alpha))), requires_grad=cfg.autotune)
        self.reset_critics()
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.policy_lr)
        self.a_optimizer = torch.optim.Adam([self.log_alpha], lr=cfg.q_lr) if cfg.autotune else None

    def reset_critics(self) -> None:
        """Fresh critics (and optimizer): PEBBLE resets Q after pre-exploration, whose values estimate the
        intrinsic reward, not the learned one."""
        for q in (self.qf1, self.qf2):
            for layer in q.net:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
        self.qf1_target.load_state_dict(self.qf1.state_dict())
        self.qf2_target.load_state_dict(self.qf2.state_dict())
        self.q_optimizer = torch.optim.Adam(list(self.qf1.parameters()) + list(self.qf2.parameters()), lr=self.cfg.q_lr)

    @property
    def optimizers(self) -> Stateful:
        """The optimizers as one checkpoint component."""
        return Stateful(self.optimizers_state_dict, self.load_optimizers_state_dict)

    def optimizers_state_dict(self) -> dict:
        """The three optimizers' states (checkpoints: the critics' optimizer is replaced by reset_critics)."""
        return {"q": self.q_optimizer.state_dict(), "actor": self.actor_optimizer.state_dict(),
                "alpha": self.a_optimizer.state_dict() if self.a_optimizer else None}  # fmt: skip

    def load_optimizers_state_dict(self, state: dict) -> None:
        self.q_optimizer.load_state_dict(state["q"])
        self.actor_optimizer.load_state_dict(state["actor"])
        if self.a_optimizer:
            self.a_optimizer.load_state_dict(state["alpha"])

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        device = self.log_alpha.device
        action, _, mean = self.actor.get_action(to_tensor(obs, device)[None])
        return (mean if deterministic else action)[0].cpu().numpy()

    def update(self, obs, actions, rewards, next_obs, terminated, step: int) -> dict[str, torch.Tensor]:
        """One gradient step on the critics and, every ``policy_frequency`` steps, on the actor (and α).

        Tensors: obs (B, o), actions (B, a), rewards (B,), next_obs (B, o), terminated (B,) float.
        ``terminated`` stops bootstrapping; a time-limit truncation is not a termination.
        """
        cfg = self.cfg
        with torch.no_grad():
            next_action, next_log_pi, _ = self.actor.get_action(next_obs)
            q_next = torch.min(self.qf1_target(next_obs, next_action), self.qf2_target(next_obs, next_action))
            q_next = q_next - self.alpha * next_log_pi
            target = rewards + (1 - terminated) * cfg.gamma * q_next.view(-1)
        q1, q2 = self.qf1(obs, actions).view(-1), self.qf2(obs, actions).view(-1)
        qf1_loss, qf2_loss = F.mse_loss(q1, target), F.mse_loss(q2, target)
        qf_loss = qf1_loss + qf2_loss
        self.q_optimizer.zero_grad(set_to_none=True)
        qf_loss.backward()
        self.q_optimizer.step()
        metrics = {
            "losses/qf1_loss": qf1_loss.detach(),
            "losses/qf2_loss": qf2_loss.detach(),
            "charts/qf1_values": q1.mean().detach(),  # a value, not a loss: SPEC §9 keeps losses/ for losses
        }

        if step % cfg.policy_frequency == 0:
            # TD3-style delayed update, compensated by as many actor steps as were skipped (CleanRL).
            for _ in range(cfg.policy_frequency):
                pi, log_pi, _ = self.actor.get_action(obs)
                q_pi = torch.min(self.qf1(obs, pi), self.qf2(obs, pi))
                actor_loss = (self.alpha * log_pi - q_pi).mean()
                self.actor_optimizer.zero_grad(set_to_none=True)
                actor_loss.backward()
                self.actor_optimizer.step()
                if cfg.autotune:
                    with torch.no_grad():
                        _, log_pi, _ = self.actor.get_action(obs)
                    alpha_loss = (-self.log_alpha.exp() * (log_pi + self.target_entropy)).mean()
                    assert self.a_optimizer is not None  # made with --autotune
                    self.a_optimizer.zero_grad(set_to_none=True)
                    alpha_loss.backward()
                    self.a_optimizer.step()
            metrics["losses/actor_loss"] = actor_loss.detach()
            if cfg.autotune:
                metrics["losses/alpha_loss"] = alpha_loss.detach()

        if step % cfg.target_network_frequency == 0:
            with torch.no_grad():
                for net, target_net in ((self.qf1, self.qf1_target), (self.qf2, self.qf2_target)):
                    for p, tp in zip(net.parameters(), target_net.parameters(), strict=True):
                        tp.mul_(1 - cfg.tau).add_(cfg.tau * p)
        return metrics
