"""Shared helpers of the toolbox tests (the toolbox's modules import by their own names, toolbox_app / toolbox_runs
/ toolbox_demo, from the installed project, so this test package's name never shadows them), a live server started
with the documented command, and Debian's Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLBOX = REPO_ROOT / "toolbox"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


class ToolboxServer:
    """``python toolbox/toolbox.py --runs-dir DIR --port 0`` from the repo root; ``url`` once it serves."""

    def __init__(self, runs_dir: Path, timeout: float = 60.0):
        self.proc = subprocess.Popen(
            [sys.executable, "toolbox/toolbox.py", "--runs-dir", str(runs_dir), "--port", "0"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline, seen = time.time() + timeout, []
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("serving on "):
                self.url = line.split("serving on ", 1)[1].strip()
                return
        self.close()
        raise RuntimeError("the toolbox did not start:\n" + "".join(seen))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
