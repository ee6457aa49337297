"""Clips and videos: re-rendering stored segments from their physics states, and encoding frames.

Clips for people are VP9 WebM (Chromium and Firefox both play it; H.264 is missing from some Chromium builds);
evaluation videos are H.264 mp4. Encoding uses the ffmpeg binary shipped by imageio-ffmpeg. Clips show every
environment step at ``clip_fps(env)`` frames per second: real time up to 30 steps/s, slow motion for tasks that
act faster (Hopper acts at 125 Hz: a 64-step segment would last half a second in real time, too short to judge).
A segment padded after a termination shows its last frame frozen for the padded steps.
"""

from __future__ import annotations

import json
import os
import queue
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from rlhf.camera import AgentCamera

VideoFormat = Literal["webm", "mp4"]
MIME = {"webm": "video/webm", "mp4": "video/mp4"}
MAX_CLIP_FPS = 30.0


def encode_video(frames: np.ndarray, fps: float, fmt: VideoFormat = "mp4", path: str | Path | None = None) -> bytes:
    """Encode (T, h, w, 3) uint8 frames; write them to ``path`` (atomically) if given; return the file's bytes."""
    import imageio.v2 as imageio

    frames = np.asarray(frames, np.uint8)
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:  # yuv420p needs even sides
        frames = frames[:, : h - h % 2, : w - w % 2]
    if fmt == "webm":
        codec, extra = "libvpx-vp9", ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "0", "-crf", "34"]
    else:
        codec, extra = "libx264", ["-preset", "veryfast", "-movflags", "+faststart"]
    fd, tmp = tempfile.mkstemp(suffix=f".{fmt}", dir=str(Path(path).parent) if path else None)
    os.close(fd)
    try:
        imageio.mimwrite(
            tmp,
            list(frames),
            fps=fps,
            codec=codec,
            macro_block_size=1,
            pixelformat="yuv420p",
            output_params=extra,
            ffmpeg_log_level="error",
        )
        data = Path(tmp).read_bytes()
        if path is not None:
            os.replace(tmp, path)
        return data
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def clip_fps(env) -> float:
    dt = getattr(env.unwrapped, "dt", None) or 1.0 / env.unwrapped.metadata.get("render_fps", MAX_CLIP_FPS)
    return float(min(1.0 / dt, MAX_CLIP_FPS))


# Labelling clips are small (240 px) and rendered on the CPU by Mesa's llvmpipe, where the suites' visual settings
# dominate the cost: Gymnasium's MuJoCo models ask for a 4096² shadow map and 4× multisampling, and their floors
# reflect the scene (a second pass). Measured on a 240 px Hopper frame (2026-12-03, benchmarks/clip_render.py and
# the per-pass timings in benchmarks/README.md): 1024² shadows and no multisampling 24 ms; no shadows 13.6 ms; no
# shadows and no reflection 6.8 ms. Clips therefore drop all three: bodies, floor and motion read as before (the
# floor's checks show height and contact), and a 64-step clip renders in well under a second. Evaluation videos keep
# the suites' settings.
CLIP_VISUALS = {"shadowsize": 1024, "offsamples": 0}


def use_clip_visuals(env) -> None:
    """Lighten the model's offscreen visual quality; call before the first render (the GL context reads it once).
    Shadows and reflections are the model's own fields (lights that cast shadows, reflecting materials), which
    Gymnasium's renderer and DM Control's alike respect; the renderer's env is its own, so only clips change."""
    from rlhf.envs import mujoco_handles

    model, _ = mujoco_handles(env)
    for name, value in CLIP_VISUALS.items():
        setattr(model.vis.quality, name, min(getattr(model.vis.quality, name), value))
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0.0


class SegmentRenderer:
    """One reusable offscreen environment that renders stored physics states (not thread-safe: one per thread).

    ``light`` renders with :data:`CLIP_VISUALS` (labelling clips); ``light=False`` keeps the suite's settings."""

    def __init__(self, env_id: str, width: int = 240, height: int = 240, light: bool = True):
        from rlhf.envs import make_env

        self.env = make_env(env_id, seed=0, render_mode="rgb_array", width=width, height=height)
        self.light = light
        self.env.reset(seed=0)
        self.camera = AgentCamera.of(self.env)
        self._visuals()
        # Gymnasium's MuJoCo renderer aims its free camera (Ant, HalfCheetah, Swimmer, the pendulums, Pusher,
        # Reacher) at the median geom position of the state it first renders
        # (gymnasium/envs/mujoco/mujoco_rendering.py, OffScreenViewer._init_camera): render the reset state once so
        # that every clip is framed alike, not around wherever the first queried segment happened to be.
        self._render()
        self.fps = clip_fps(self.env)

    def frames(self, physics_states: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(H, S) states, (H,) valid mask -> (H, h, w, 3) frames; padded steps repeat the last valid frame."""
        from rlhf.envs import set_physics_state

        valid = int(mask.sum()) if mask.any() else 1
        rendered = []
        for state in physics_states[:valid]:
            set_physics_state(self.env, state)
            self._visuals()
            rendered.append(self._render().copy())
        rendered += [rendered[-1]] * (len(physics_states) - valid)
        return np.stack(rendered)

    def _render(self) -> np.ndarray:
        # Gymnasium makes its offscreen GL context current only when one env holds several viewers
        # (gymnasium/envs/mujoco/mujoco_rendering.py, MujocoRenderer._get_viewer), so with two renderers in one
        # thread the second one's context stayed current and the first drew blank frames (measured).
        viewer = getattr(getattr(self.env.unwrapped, "mujoco_renderer", None), "viewer", None)
        if viewer is not None:
            viewer.make_context_current()
        return self.camera.render()

    def _visuals(self) -> None:
        # After the reset, and after every state set: a DM Control manipulation task recompiles its model when
        # set_physics_state rebuilds another episode's model, and a new model (and GL context) has the suite's
        # settings again. On a model whose context exists already this changes nothing.
        if self.light:
            use_clip_visuals(self.env)

    def clip(self, physics_states: np.ndarray, mask: np.ndarray, fmt: VideoFormat = "webm") -> bytes:
        return encode_video(self.frames(physics_states, mask), self.fps, fmt)

    def close(self) -> None:
        self.env.close()


class ClipWorker:
    """Renders clips on a background thread with its own renderer, so training is not stalled.

    ``submit(key, states, mask)`` queues a segment; finished clips go to ``on_done(key, clip bytes)`` (called on
    the worker thread) or, without it, to :meth:`get` in submission order. The renderer (and its OpenGL context)
    is created inside the worker thread and reused.
    """

    def __init__(
        self,
        env_id: str,
        width: int = 240,
        height: int = 240,
        fmt: VideoFormat = "webm",
        on_done: Callable[[object, bytes], None] | None = None,
    ):
        self.fmt = fmt
        self._todo: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._on_done = on_done
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(env_id, width, height), daemon=True, name="clip-renderer"
        )
        self._thread.start()

    def _run(self, env_id: str, width: int, height: int) -> None:
        renderer = None
        try:
            renderer = SegmentRenderer(env_id, width, height)
            while (item := self._todo.get()) is not None:
                key, states, mask = item
                clip = renderer.clip(states, mask, self.fmt)
                if self._on_done is None:
                    self._done.put((key, clip))
                else:
                    self._on_done(key, clip)
        except BaseException as e:  # surfaced to the consumer instead of dying silently
            self.error = e
            self._done.put((None, e))
        finally:
            if renderer is not None:
                renderer.close()

    def submit(self, key, physics_states: np.ndarray, mask: np.ndarray) -> None:
        self._todo.put((key, np.asarray(physics_states), np.asarray(mask)))

    def get(self, timeout: float | None = None):
        """The next finished (key, bytes); raises the worker's exception if rendering failed."""
        key, value = self._done.get(timeout=timeout)
        if isinstance(value, BaseException):
            raise RuntimeError(f"clip rendering failed: {value}") from value
        return key, value

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued clips (up to ``timeout`` seconds) and stop the thread."""
        self._todo.put(None)
        self._thread.join(timeout=timeout)


class QueryClipRecorder:
    """``--capture-video``: keeps each queried pair as two H.264 mp4 clips plus a line of ``index.jsonl`` with its
    label (``videos/queries/``), rendered in the background."""

    def __init__(self, directory: Path, env_id: str, size: int = 240):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.worker = ClipWorker(env_id, size, size, "mp4", on_done=self._write)

    def _write(self, relative_path, clip: bytes) -> None:
        path = self.dir / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(clip)
        os.replace(tmp, path)

    def record(self, seg_a, seg_b, labels: np.ndarray, session: int, step: int) -> None:
        lines = []
        for i in range(len(labels)):
            names = [f"session_{session:04d}/q{i:03d}_{side}.mp4" for side in "ab"]
            for name, seg in zip(names, (seg_a, seg_b), strict=True):
                self.worker.submit(name, seg.physics_states[i], seg.mask[i])
            label = None if np.isnan(labels[i]) else float(labels[i])
            lines.append(
                json.dumps(
                    {
                        "session": session,
                        "query": i,
                        "step": step,
                        "clip_a": names[0],
                        "clip_b": names[1],
                        "label": label,
                    }
                )
            )
        with open(self.dir / "index.jsonl", "a") as f:
            f.write("\n".join(lines) + "\n")

    def close(self) -> None:
        self.worker.close()


class EvaluationRecorder:
    """``--capture-video``: the first episode of each evaluation as ``videos/eval/step_{step:08d}.mp4``, in real
    time (every k-th step rendered, so the video plays at ≤ 30 fps)."""

    def __init__(self, directory: Path, env, on_saved: Callable[[Path, int], None] | None = None):
        """``on_saved(path, step)`` is told about each video written (e.g. to send it to W&B)."""
        self.on_saved = on_saved
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.frame_every = (
            max(1, round((1.0 / env.unwrapped.dt) / MAX_CLIP_FPS)) if getattr(env.unwrapped, "dt", None) else 1
        )
        self.fps = (1.0 / env.unwrapped.dt) / self.frame_every if getattr(env.unwrapped, "dt", None) else MAX_CLIP_FPS
        self.frames: list[np.ndarray] = []

    def on_frame(self, episode: int, frame: np.ndarray) -> None:
        self.frames.append(frame.copy())

    def save(self, step: int) -> Path | None:
        if not self.frames:
            return None
        path = self.dir / f"step_{step:08d}.mp4"
        encode_video(np.stack(self.frames), self.fps, "mp4", path)
        self.frames = []
        if self.on_saved is not None:
            self.on_saved(path, step)
        return path
