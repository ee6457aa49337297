"""Fixtures of the human-feedback server tests: apps over temporary data dirs, real VP9/H.264 clips, a live
server subprocess, and Debian's Chromium for the browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rlhf.feedback_server_process import FeedbackServerProcess, start_feedback_server

from .feedback_testutil import CHROMIUM, TOKEN, encode_clip, moving_square


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
    from feedback_server import create_app

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
