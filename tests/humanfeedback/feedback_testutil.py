"""Helpers shared by the human-feedback tests (a uniquely named module: ``from conftest import`` is ambiguous
when several conftest.py files live outside packages)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rlhf.server_ready import ServerNotReady, wait_for_ready_file

REPO = Path(__file__).resolve().parents[2]

SERVER = REPO / "humanFeedback" / "feedback_server.py"
TOKEN = "test-token-0123456789abcdef"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def encode_clip(frames: np.ndarray, fps: int = 15, codec: str = "libvpx-vp9") -> bytes:
    """(T, H, W, 3) uint8 frames -> the bytes of a VP9 WebM (or H.264 MP4 with codec="libx264")."""
    import imageio.v2 as iio

    suffix = ".mp4" if codec == "libx264" else ".webm"
    fast = (
        ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"]
        if codec == "libvpx-vp9"
        else ["-preset", "ultrafast"]
    )
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"clip{suffix}"
        w = iio.get_writer(
            path, format="FFMPEG", fps=fps, codec=codec, macro_block_size=1, pixelformat="yuv420p", output_params=fast
        )
        for f in frames:
            w.append_data(f)
        w.close()
        return path.read_bytes()


def moving_square(color: tuple[int, int, int], n: int = 30, size: int = 96, speed: int = 3) -> np.ndarray:
    frames = np.zeros((n, size, size, 3), np.uint8)
    frames[:] = color
    for i in range(n):
        y = (i * speed) % (size - 12)
        frames[i, y : y + 12, 20:44] = 255
    return frames


@contextmanager
def serve(data_dir: Path, *flags: str, timeout: float = 30.0, script: Path = SERVER) -> Iterator[str]:
    """The real command (waitress) on a free port with ``flags`` and the test token; yields its URL, read from its
    ready file (``<data_dir>.ready.json``). Its output goes to ``<data_dir>.log``; ``script`` replaces the server
    (a wrapper around it, in the ready-file tests)."""
    log = data_dir.with_name(data_dir.name + ".log")
    ready_file = data_dir.with_name(data_dir.name + ".ready.json")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script), "--port", "0", "--data-dir", str(data_dir), "--ready-file", str(ready_file)]
            + list(flags),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "FEEDBACK_SERVER_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"},
        )
    try:
        try:
            ready = wait_for_ready_file(ready_file, proc, timeout)
        except ServerNotReady as e:
            raise RuntimeError(f"the server did not start ({e}):\n" + log.read_text()) from None
        yield ready.local_url("127.0.0.1")
    finally:
        proc.terminate()
        proc.wait(15)
