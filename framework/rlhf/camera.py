"""The camera that keeps a travelling agent in the picture, for labelling clips and evaluation videos alike
(rlhf.video, rlhf.evaluate, framework/evaluation.py, rlhf.env_check)."""

from __future__ import annotations

import weakref

import numpy as np


def tracked_body(env) -> int | None:
    """The body a Gymnasium MuJoCo env's camera should follow: its camera configuration's ``trackbodyid`` (Hopper,
    Walker2d, Humanoid), else a root body that roams (a free joint or two slide joints: Ant, HalfCheetah, Swimmer);
    None for a fixed scene (the pendulums, Reacher, Pusher) and for envs without Gymnasium's renderer (DM Control's
    own cameras track their walkers)."""
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    if renderer is None:
        return None
    import mujoco

    body = (renderer.default_cam_config or {}).get("trackbodyid")
    if body is not None:
        return int(body) if body > 0 else None
    model = env.unwrapped.model
    root = [model.jnt_type[j] for j in range(model.njnt) if model.jnt_bodyid[j] == 1]
    roams = mujoco.mjtJoint.mjJNT_FREE in root or root.count(mujoco.mjtJoint.mjJNT_SLIDE) >= 2
    return 1 if model.nbody > 1 and roams else None


class AgentCamera:
    """Renders an env's frames with the camera kept over the agent.

    Gymnasium 1.4 applies a model's tracking configuration (``trackbodyid``) to a free camera, which MuJoCo never
    moves: its renderer resolves no camera to -1, and ``OffScreenViewer.render`` makes the camera
    ``mjCAMERA_FREE`` for every frame (gymnasium/envs/mujoco/mujoco_rendering.py). An agent that travels leaves the
    picture: measured here, a Hopper placed at x = 3 m rendered as an empty floor, in labelling clips and in
    evaluation videos alike. So the first rendered frame fixes the framing (the camera's distance, angles and
    look-at point relative to the tracked body, :func:`tracked_body`), and before every later frame the look-at
    point moves horizontally with that body; its height stays, so the picture does not bob with each hop. One per
    env (:meth:`of`): the framing is the env's first frame's, whichever episode is rendered later."""

    _cameras: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, env):
        self.env, self.body = env, tracked_body(env)
        self.offset: np.ndarray | None = None

    @classmethod
    def of(cls, env) -> AgentCamera:
        """The env's camera (made on first use)."""
        camera = cls._cameras.get(env.unwrapped)
        if camera is None or camera.env is not env:
            camera = cls._cameras[env.unwrapped] = cls(env)
        return camera

    def render(self) -> np.ndarray:
        if self.body is None:
            return self.env.render()
        renderer = self.env.unwrapped.mujoco_renderer
        position = self.env.unwrapped.data.xpos[self.body]
        if self.offset is None:
            frame = self.env.render()  # creates the viewer, framed by the env's own camera configuration
            self.offset = renderer.viewer.cam.lookat[:2] - position[:2]
            return frame
        renderer.viewer.cam.lookat[:2] = position[:2] + self.offset
        return self.env.render()
