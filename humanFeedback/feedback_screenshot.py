"""Write media/feedback_server.png: the labelling page with two clips loaded, taken by Playwright + Chromium.

    uv run python humanFeedback/feedback_screenshot.py [--out media/feedback_server.png]

Starts its own server (temporary data dir, random port), uploads two synthetic "hopper" clips (VP9 WebM made with
imageio from numpy frames: one hops forward, one falls over) and photographs the page while both play.
The tests call ``make_demo_clips``/``populate``/``take_screenshot`` against their own server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import requests

from rlhf.server_ready import ServerNotReady, wait_for_ready_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def _capsule(img: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], r: float, color) -> None:
    """Paint a capsule (a thick segment with round ends) from p0 to p1 (x, y pixels) into img (H, W, 3)."""
    h, w, _ = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
    d2 = (xx - x0 - t * dx) ** 2 + (yy - y0 - t * dy) ** 2
    img[d2 <= r * r] = color


def _hopper_frames(kind: str, n: int = 45, size: int = 240) -> np.ndarray:
    """A stick "hopper" on a checkered floor: ``hop`` bounces forward (the floor scrolls), ``fall`` tips over."""
    frames = np.empty((n, size, size, 3), np.uint8)
    ground = int(size * 0.78)
    sky = np.linspace([200, 220, 245], [235, 240, 250], ground).astype(np.uint8)
    for i in range(n):
        f = frames[i]
        f[:ground] = sky[:, None, :]
        scroll = (i * 6) if kind == "hop" else 0
        cols = ((np.arange(size) + scroll) // 24) % 2
        rows = (np.arange(size - ground) // 12) % 2
        f[ground:] = np.where((cols[None, :] ^ rows[:, None])[..., None] == 1, [90, 110, 130], [120, 140, 160])
        phase = i / n
        if kind == "hop":
            lift, tilt = 38 * abs(np.sin(phase * 3 * np.pi)), 0.15 * np.sin(phase * 6 * np.pi)
        else:
            lift, tilt = 0.0, min(phase * 2.2, 1.35)
        foot = np.array([size * 0.45, ground - 4 - lift])
        up = np.array([np.sin(tilt), -np.cos(tilt)])
        knee = foot + up * 45 + np.array([8, 0])
        hip = knee + up * 40 - np.array([6, 0])
        head = hip + up * 55
        _capsule(f, tuple(foot - [14, 0]), tuple(foot + [16, 0]), 5, (60, 60, 70))
        _capsule(f, tuple(foot), tuple(knee), 6, (200, 120, 50))
        _capsule(f, tuple(knee), tuple(hip), 7, (210, 140, 60))
        _capsule(f, tuple(hip), tuple(head), 11, (180, 90, 40))
    return frames


def encode_webm(frames: np.ndarray, fps: int = 15) -> bytes:
    import imageio.v2 as iio

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "clip.webm"
        writer = iio.get_writer(
            path,
            format="FFMPEG",
            fps=fps,
            codec="libvpx-vp9",
            macro_block_size=1,
            pixelformat="yuv420p",
            output_params=["-deadline", "realtime", "-cpu-used", "8", "-b:v", "600k"],
        )
        for frame in frames:
            writer.append_data(frame)
        writer.close()
        return path.read_bytes()


def make_demo_clips() -> tuple[bytes, bytes]:
    return encode_webm(_hopper_frames("hop")), encode_webm(_hopper_frames("fall"))


def populate(url: str, token: str | None, clips: tuple[bytes, bytes], run_id: str = "hopper-demo") -> None:
    """Register a demo run and upload three queries built from ``clips`` (falls, hops) over HTTP."""
    s = requests.Session()
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    s.post(
        f"{url}/api/runs",
        json={"run_id": run_id, "instruction": "make the hopper hop forward", "env_id": "Hopper-v5"},
        timeout=10,
    ).raise_for_status()
    hop, fall = clips
    for i, (a, b) in enumerate([(fall, hop), (hop, fall), (hop, hop)]):
        files = {"clip_a": ("a.webm", a, "video/webm"), "clip_b": ("b.webm", b, "video/webm")}
        r = s.post(
            f"{url}/api/runs/{run_id}/queries", data={"query_id": f"s3-q{i}", "session": "3"}, files=files, timeout=10
        )
        r.raise_for_status()


def take_screenshot(page_url: str, out: Path, chromium: str = "/usr/bin/chromium", browser=None) -> None:
    """Open the page, wait until both clips play, and save a PNG of the viewport to ``out``.

    ``browser``: an already launched Playwright browser to use (else Chromium at ``chromium`` is launched).
    """
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            own = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                take_screenshot(page_url, out, browser=own)
            finally:
                own.close()
        return
    ctx = browser.new_context(viewport={"width": 1180, "height": 900}, device_scale_factor=1)
    try:
        ctx.add_init_script("localStorage.setItem('cleanrlhf.labeller', 'Ada')")
        page = ctx.new_page()
        page.goto(page_url)
        page.wait_for_function(
            "() => ['clip-a','clip-b'].every(id => { const v = document.getElementById(id);"
            " return v.readyState >= 2 && !v.paused && v.currentTime > 0.9; })",
            timeout=15_000,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
    finally:
        ctx.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "media" / "feedback_server.png", help="PNG to write")
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    args = ap.parse_args()
    problem = None
    if args.out.suffix.lower() != ".png" or args.out.is_dir():
        problem = f"--out {args.out}: must be a .png file"
    elif not (Path(args.chromium).is_file() or shutil.which(args.chromium)):
        problem = f"--chromium {args.chromium}: not found (Debian: apt-get install chromium)"
    else:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)  # before anything starts: a bad --out fails at once
        except OSError:
            problem = f"--out {args.out}: cannot create its directory (a part of its path is a file, or not writable)"
    if problem:
        print(f"{ap.prog}: error: {problem}", file=sys.stderr)
        return 2
    token = "screenshot-token-0123456789"
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, FEEDBACK_SERVER_TOKEN=token, PYTHONUNBUFFERED="1")
        ready_file = Path(data) / "ready.json"
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "feedback_server.py"), "--port", "0", "--data-dir", data]
            + ["--ready-file", str(ready_file)],
            stdout=subprocess.DEVNULL,  # its "Open ..." line is for people; errors still reach stderr
            env=env,
        )
        try:
            try:
                url = wait_for_ready_file(ready_file, proc, timeout=60).local_url("127.0.0.1")
            except ServerNotReady as e:
                print(f"{ap.prog}: error: {e}", file=sys.stderr)
                return 1
            populate(url, token, make_demo_clips())
            take_screenshot(f"{url}/?token={token}", args.out, args.chromium)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
