"""toolbox_screenshot.py (issue 9, item 12): ``--runs-dir runs`` works on real run layouts (a run that just started
has no curve yet) and never replaces the tracked media/toolbox.png unless that path is given explicitly."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from .toolbox_testutil import REPO_ROOT, TOOLBOX

MEDIA = REPO_ROOT / "media" / "toolbox.png"
SCRIPT = TOOLBOX / "toolbox_screenshot.py"


def _digest() -> str:
    return hashlib.sha256(MEDIA.read_bytes()).hexdigest()


def _run(*args: str, cwd, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_bad_invocations_are_one_line_and_touch_nothing(tmp_path):
    before = _digest()
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = {
        ("--runs-dir", "runs"): "--out",  # the README's command without --out: no default path to overwrite
        ("--runs-dir", "runs", "--out", "x.png"): "no such directory",
        ("--runs-dir", "empty", "--out", "x.png"): "no runs in",
        ("--runs-dir", "empty", "--out", "x.txt"): ".png",
        ("--runs-dir", "empty", "--out", "x.png", "--chromium", "/no/chromium"): "not found",
        ("--demo", "--runs-dir", "empty", "--out", "x.png"): "either --runs-dir or --demo",
    }
    for args, expected in cases.items():
        p = _run(*args, cwd=tmp_path)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.count("\n") == 1 and expected in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["empty", "file"]  # nothing written
    assert _digest() == before


@pytest.mark.browser
@pytest.mark.xdist_group("browser")
def test_screenshot_of_runs_including_one_that_just_started(tmp_path, chromium_path, runs_root):
    """``--runs-dir runs`` where the newest run has only its args.json so far (no curve to wait for)."""
    runs = tmp_path / "runs"
    for name in ("Hopper-v5__sac_rlhf__1__1760000000", "Hopper-v5__sac_rlhf__2__1760000500"):
        shutil.copytree(runs_root / name, runs / name, symlinks=True)
    started = runs / "Hopper-v5__sac_rlhf__3__1760009999"
    started.mkdir()
    (started / "args.json").write_text(json.dumps({"env_id": "Hopper-v5", "exp_name": "sac_rlhf", "seed": 3}))
    before = _digest()
    p = _run("--runs-dir", "runs", "--out", "shots/toolbox.png", "--chromium", chromium_path, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    shot = tmp_path / "shots" / "toolbox.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert _digest() == before
