"""A behaviour teacher: the simulated teacher judges segments by a user's function of their transitions instead of
the environment's reward (``--teacher-sim-reward module:function``; issue 12, item 5), so a study of a behaviour no
reward describes ("the ant raises one leg") can be rehearsed without people.

The function takes one batch of segments and returns one number per step, higher is better::

    def criterion(t: rlhf.custom_reward.Transitions) -> np.ndarray:   # (N, H)

``t.obs`` (N, H, obs_dim), ``t.actions`` (N, H, act_dim), ``t.next_obs`` (N, H, obs_dim), ``t.mask`` (N, H; False
on the padding after a termination), ``t.physics_states`` (N, H, s: rlhf.envs.get_physics_state of each step's
observation) and ``t.env_id``. For what the observation leaves out, ``t.body_positions(names)`` and
``t.geom_positions(names)`` give the world positions (N, H, k, 3) of MuJoCo bodies or geoms at each step's
observation, by forward kinematics from the stored physics state (e.g. foot heights: examples/ant_raise_leg.py).

The teacher zeroes the padding steps, as it does the true reward there (SPEC §5), then applies B-Pref's rules
(β, γ, ε, δ: rlhf.teacher) to these rewards. The function is given as ``module:function`` (an importable module)
or ``path/to/file.py:function``; a missing module, file or function is a one-line error at start-up, and so is a
result that is not (N, H) finite numbers: the teacher tries the function on one short random segment of the
environment before the run starts (:meth:`CustomReward.probe`), and checks every later result too.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlhf.config import ConfigError
from rlhf.segments import Segments

FLAG = "--teacher-sim-reward"


def load_reward_function(spec: str) -> Callable:
    """The function named by ``module:function`` or ``path/to/file.py:function``; ValueError naming the flag."""
    module_name, sep, name = spec.rpartition(":")
    if not sep or not module_name or not name.isidentifier():
        raise ValueError(f"{FLAG} must be module:function or path/to/file.py:function, got {spec!r}")
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"{FLAG} {spec}: no such file {path}")
        loader = importlib.util.spec_from_file_location(f"teacher_sim_reward_{path.stem}", path)
        if loader is None or loader.loader is None:
            raise ValueError(f"{FLAG} {spec}: {path} is not a Python file")
        module = importlib.util.module_from_spec(loader)
        try:
            loader.loader.exec_module(module)
        except Exception as e:
            raise ValueError(f"{FLAG} {spec}: importing {path} failed: {type(e).__name__}: {e}") from e
    else:
        try:
            module = importlib.import_module(module_name)
        except Exception as e:
            raise ValueError(f"{FLAG} {spec}: cannot import {module_name!r} ({type(e).__name__}: {e})") from e
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"{FLAG} {spec}: {module_name} has no function {name!r}")
    return fn


class _Kinematics:
    """One environment of the task, to place its model in stored physics states (created on first use)."""

    def __init__(self, env_id: str):
        self.env_id, self.env = env_id, None

    def environment(self):
        from rlhf.envs import make_env

        if self.env is None:
            self.env = make_env(self.env_id)
            self.env.reset(seed=0)
        return self.env

    def positions(self, kind: str, names: Sequence[str], physics_states: np.ndarray) -> np.ndarray:
        import mujoco

        from rlhf.envs import mujoco_handles, set_physics_state

        model, data = mujoco_handles(self.environment())
        obj = mujoco.mjtObj.mjOBJ_BODY if kind == "body" else mujoco.mjtObj.mjOBJ_GEOM
        count = model.nbody if kind == "body" else model.ngeom
        ids = [mujoco.mj_name2id(model, obj, n) for n in names]
        if -1 in ids:
            known = [mujoco.mj_id2name(model, obj, i) for i in range(count)]
            missing = names[ids.index(-1)]
            raise ConfigError(
                f"{FLAG}: {self.env_id} has no {kind} {missing!r}; its {kind}s: {[k for k in known if k]}"
            )
        flat = physics_states.reshape(-1, physics_states.shape[-1])
        out = np.empty((len(flat), len(ids), 3))
        source = data.xpos if kind == "body" else data.geom_xpos
        for i, state in enumerate(flat):
            set_physics_state(self.env, state)
            out[i] = source[ids]
        return out.reshape(*physics_states.shape[:-1], len(ids), 3)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


@dataclass
class Transitions:
    """A batch of N segments of H steps as the criterion sees it (see the module docstring)."""

    obs: np.ndarray
    actions: np.ndarray
    next_obs: np.ndarray
    mask: np.ndarray
    physics_states: np.ndarray
    env_id: str
    _kinematics: _Kinematics

    def body_positions(self, names: Sequence[str]) -> np.ndarray:
        """(N, H, k, 3) world positions of the named MuJoCo bodies at each step's observation."""
        return self._kinematics.positions("body", list(names), self.physics_states)

    def geom_positions(self, names: Sequence[str]) -> np.ndarray:
        """(N, H, k, 3) world positions of the centres of the named MuJoCo geoms at each step's observation."""
        return self._kinematics.positions("geom", list(names), self.physics_states)


class EpisodeSteps:
    """The transitions of one episode as they happen, for scoring it by a criterion as one segment (the probe,
    ``framework/evaluation.py``, the example's baselines)."""

    def __init__(self) -> None:
        self.steps: dict[str, list] = {"obs": [], "actions": [], "next_obs": [], "physics_states": []}

    def add(self, obs, action, next_obs, physics_state) -> None:
        for key, value in zip(self.steps, (obs, action, next_obs, physics_state), strict=True):
            self.steps[key].append(value)

    def segment(self, length: int | None = None) -> Segments:
        """A batch of one segment of ``length`` steps (default: the episode's), padded after the episode's end with
        its frozen last step and a False mask, as the replay buffer's segments are."""
        n = len(self.steps["obs"])
        length = n if length is None else length
        pad = [min(i, n - 1) for i in range(length)]
        arrays = {k: np.asarray(v, np.float32)[pad][None] for k, v in self.steps.items()}
        mask = (np.arange(length) < n)[None]
        return Segments(arrays["obs"], arrays["actions"], np.zeros(mask.shape, np.float32), mask,
                        arrays["physics_states"], arrays["next_obs"])  # fmt: skip


class CustomReward:
    """segments -> (N, H) rewards by the user's criterion, zero on padding; ConfigError for a bad result."""

    def __init__(self, spec: str, env_id: str):
        self.spec, self.env_id = spec, env_id
        self.fn = load_reward_function(spec)
        self._kinematics = _Kinematics(env_id)

    def __call__(self, seg: Segments) -> np.ndarray:
        assert seg.next_obs is not None  # Segments fills it in __post_init__
        t = Transitions(seg.obs, seg.actions, seg.next_obs, seg.mask, seg.physics_states, self.env_id,
                        self._kinematics)  # fmt: skip
        try:
            out = self.fn(t)
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"{FLAG} {self.spec} failed: {type(e).__name__}: {e}") from e
        try:
            rewards = np.asarray(out, np.float64)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{FLAG} {self.spec} returned {type(out).__name__}, not an (N, H) array") from e
        if rewards.shape != seg.mask.shape:
            raise ConfigError(f"{FLAG} {self.spec} returned shape {rewards.shape}, expected (N, H) = {seg.mask.shape}")
        if not np.isfinite(rewards).all():
            raise ConfigError(f"{FLAG} {self.spec} returned non-finite rewards")
        return np.where(seg.mask, rewards, 0.0)

    def probe(self, length: int, seed: int = 0) -> None:
        """Try the criterion on one segment of ``length`` random steps of the task (ConfigError if it fails)."""
        from rlhf.envs import get_physics_state

        env = self._kinematics.environment()  # the criterion's kinematics set their own states from here on
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        episode = EpisodeSteps()
        for _ in range(length):
            action = env.action_space.sample()
            physics = get_physics_state(env)
            next_obs, _, terminated, truncated, _ = env.step(action)
            episode.add(obs, action, next_obs, physics)
            obs = next_obs
            if terminated or truncated:
                break
        self(episode.segment(length))

    def close(self) -> None:
        self._kinematics.close()
