"""Fixtures of the toolbox tests: a runs directory of demo runs plus the awkward cases (a damaged events file, bad
index lines, a link and a sibling directory outside the runs directory)."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from .toolbox_testutil import CHROMIUM


def tiny_png() -> bytes:
    """A valid 2x2 grey PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * 2 for _ in range(2))  # filter byte + 2 grey pixels per row
    header = struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    import toolbox_demo

    base = tmp_path_factory.mktemp("toolbox")
    root = base / "runs"
    pebble, pebble2, oracle = toolbox_demo.make_demo_runs(root)

    # evaluation.py's output in one run
    ev = pebble / "evaluation"
    ev.mkdir()
    (ev / "episode_000.mp4").write_bytes((pebble / "videos" / "eval" / "step_00100000.mp4").read_bytes())
    (ev / "returns.png").write_bytes(tiny_png())
    summary = {
        "algorithm": "sac_rlhf",
        "env_id": "Hopper-v5",
        "step": 100000,
        "episodes": 2,
        "mean": 10.0,
        "std": 1.0,
        "ci95_low": 8.6,
        "ci95_high": 11.4,
        "min": 9.0,
        "max": 11.0,
        "median": 10.0,
        "returns": [9.0, 11.0],
        "videos": ["episode_000.mp4", "../../runs-secret/secret.mp4"],
    }
    (ev / "summary.json").write_text(json.dumps(summary))

    # bad lines in a queries index: malformed JSON, a bad label, a clip path leaving videos/queries
    with open(pebble2 / "videos" / "queries" / "index.jsonl", "a") as f:
        f.write("{not json\n")
        f.write(
            json.dumps({"session": 9, "query": 0, "step": 1, "clip_a": "x.webm", "clip_b": "y.webm", "label": 0.7})
            + "\n"
        )
        f.write(
            json.dumps(
                {
                    "session": 9,
                    "query": 1,
                    "step": 1,
                    "clip_a": "../../../../runs-secret/secret.webm",
                    "clip_b": "y.webm",
                    "label": 1.0,
                }
            )
            + "\n"
        )
        f.write(
            json.dumps(
                {
                    "session": 7,
                    "query": 0,
                    "step": 99,
                    "clip_a": "later/a.webm",
                    "clip_b": "later/b.webm",
                    "label": None,
                }
            )
            + "\n"
        )

    # outside the runs directory: a sibling whose name extends the runs directory's, and a link to it
    secret = base / "runs-secret"
    secret.mkdir()
    (secret / "secret.mp4").write_bytes(b"TOP-SECRET-CONTENT")
    (secret / "secret.webm").write_bytes(b"TOP-SECRET-CONTENT")
    (secret / "args.json").write_text("{}")
    os.symlink(secret, root / "linked-run")
    os.symlink(secret / "secret.mp4", oracle / "videos" / "eval" / "step_00000001.mp4")

    # a run still being written: a truncated events file, no checkpoint; and a directory that is not a run
    broken = root / "Walker2d-v5__ppo__3__1760002000"
    broken.mkdir()
    (broken / "args.json").write_text(json.dumps({"env_id": "Walker2d-v5", "num_steps": 2048, "seed": 3}))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # the process that wrote it was killed: its pid is free
    gone.wait()
    manifest = {"format_version": 1, "algorithm": "ppo", "env_id": "Walker2d-v5", "seed": 3, "status": "running",
                "step": 4096, "pid": gone.pid, "host": socket.gethostname()}  # fmt: skip
    (broken / "run.json").write_text(json.dumps(manifest))
    events = next(oracle.glob("events.out.tfevents.*")).read_bytes()
    (broken / "events.out.tfevents.1760002000.host.1.0").write_bytes(events[: len(events) // 2])
    (root / "notes").mkdir()
    (root / "README.txt").write_text("not a run")
    return root


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's Chromium (apt-get install -y chromium)")
    return str(CHROMIUM)
