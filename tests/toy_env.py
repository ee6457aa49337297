"""A scripted toy task with a known reward, for learning tests that take seconds.

``Toy-v5``: a MuJoCo slider (so physics states, clips and checkpoints work as for the real tasks) with one motor;
the observation is (position, velocity), the action a ∈ [-1, 1], and the reward is exactly ``a`` — the best
policy pushes with +1 every step, a random one earns 0 on average. Episodes last 50 steps. A reward model can
represent this reward exactly, so a correct preference pipeline learns it from a few dozen labels; a pipeline
whose labels are flipped learns −a and drives the return to −50.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

ENV_ID = "Toy-v5"
EPISODE_STEPS = 50
XML = """
<mujoco model="toy">
  <option timestep="0.02"/>
  <worldbody>
    <body name="slider">
      <joint name="x" type="slide" axis="1 0 0" damping="1"/>
      <geom type="box" size="0.1 0.1 0.1" mass="1" rgba="0.8 0.3 0.3 1"/>
    </body>
  </worldbody>
  <actuator><motor joint="x" gear="1" ctrlrange="-1 1" ctrllimited="true"/></actuator>
</mujoco>
"""


def _toy_class():
    from gymnasium import spaces
    from gymnasium.envs.mujoco import MujocoEnv

    class ToyEnv(MujocoEnv):
        metadata = {"render_modes": ["human", "rgb_array", "depth_array", "rgbd_tuple"]}

        def __init__(self, **kwargs):
            path = Path(tempfile.gettempdir()) / "cleanrlhf_toy.xml"
            path.write_text(XML)
            space = spaces.Box(-np.inf, np.inf, (2,), np.float64)
            super().__init__(str(path), 1, observation_space=space, **kwargs)
            self.metadata["render_fps"] = int(np.round(1.0 / self.dt))

        def step(self, action):
            self.do_simulation(action, self.frame_skip)
            reward = float(np.clip(action, -1, 1)[0])
            return self._get_obs(), reward, False, False, {}

        def reset_model(self):
            qpos = self.init_qpos + self.np_random.uniform(-0.1, 0.1, self.model.nq)
            self.set_state(qpos, self.init_qvel)
            return self._get_obs()

        def _get_obs(self):
            return np.concatenate([self.data.qpos, self.data.qvel])

    return ToyEnv


def register_toy_env(monkeypatch) -> str:
    """Register ``Toy-v5`` and let the framework's environment factory accept it; returns its id."""
    import gymnasium as gym

    import rlhf.envs

    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=_toy_class(), max_episode_steps=EPISODE_STEPS)
    original = rlhf.envs.validate_env_id
    monkeypatch.setattr(rlhf.envs, "validate_env_id", lambda env_id: None if env_id == ENV_ID else original(env_id))
    return ENV_ID
