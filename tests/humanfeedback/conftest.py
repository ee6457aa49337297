"""Fixtures of the human-feedback server tests: apps over temporary data dirs, real VP9/H.264 clips, a live
server subprocess, and Debian's Chromium for the browser tests."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
for p in (REPO / "humanFeedback", REPO / "framework"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from feedback_server import create_app  # noqa: E402

from rlhf.feedback_client import FeedbackServerProcess, start_feedback_server  # noqa: E402

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


@pytest.fixture(scope="session")
def webm_clips() -> list[bytes]:
    """Eight distinct two-second VP9 WebM clips (96x96, 15 fps)."""
    colors = [
        (200, 30, 30),
        (30, 30, 200),
        (30, 150, 30),
        (150, 150, 20),
        (120, 30, 150),
        (20, 140, 140),
        (90, 90, 90),
        (200, 120, 40),
    ]
    return [encode_clip(moving_square(c, speed=2 + i % 3)) for i, c in enumerate(colors)]


@pytest.fixture(scope="session")
def mp4_clip() -> bytes:
    return encode_clip(moving_square((10, 120, 200)), codec="libx264")


@pytest.fixture
def app(tmp_path: Path):
    app = create_app(tmp_path / "data", token=TOKEN, lease_seconds=120, max_upload_bytes=2 * 1024 * 1024)
    yield app
    app.extensions["feedback_store"].close()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[FeedbackServerProcess]:
    """The real CLI (waitress) as a subprocess on a free port, with a token."""
    server = start_feedback_server(port=0, data_dir=tmp_path / "server-data", token=TOKEN)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's Chromium (apt-get install -y chromium)")
    return str(CHROMIUM)
