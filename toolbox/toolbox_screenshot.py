"""Screenshot of the toolbox comparing runs, taken with Playwright and Debian's Chromium.

uv run python toolbox/toolbox_screenshot.py --runs-dir runs --out toolbox.png     # the two newest runs with curves
uv run python toolbox/toolbox_screenshot.py --demo --out media/toolbox.png        # the README's (rendered demo runs)

``--out`` is required: the README's picture (media/toolbox.png) is tracked, and only an explicit path replaces it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import NoReturn

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class ScreenshotError(Exception):
    """A problem with what was asked for (no runs, an unknown run): one line, exit code 2."""


def pick_runs(runs_dir: Path, wanted: list[str]) -> tuple[list[str], int]:
    """The runs to select (``wanted``, else the two newest with a learning curve) and how many of them have one."""
    from toolbox_app import create_app

    api = create_app(runs_dir).test_client()
    listed = [r["id"] for r in api.get("/api/runs").get_json()["runs"]]  # newest first
    if not listed:
        raise ScreenshotError(f"no runs in {runs_dir} (a run is a directory holding args.json or an events file)")
    unknown = [r for r in wanted if r not in listed]
    if unknown:
        raise ScreenshotError(f"no run {unknown[0]!r} in {runs_dir}")
    with_curve = [r for r in listed if api.get(f"/api/runs/{r}/curves").get_json()["points"]]
    ids = wanted or (with_curve[:2] if with_curve else listed[:2])  # a run that just started has no curve yet
    return ids, sum(r in with_curve for r in ids)


def screenshot(runs_dir: Path, out: Path, runs: list[str], chromium: str, height: int = 2000) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright
    from toolbox_app import create_app
    from waitress import create_server

    ids, curves = pick_runs(runs_dir, runs)
    out.parent.mkdir(parents=True, exist_ok=True)  # before the browser starts: a bad --out fails at once
    server = create_server(create_app(runs_dir), host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.effective_port}/"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": height})
            page.goto(url)
            page.wait_for_selector("#runs tbody tr")
            for run in ids:  # by the row's data, not a CSS selector: a run's name may hold quotes
                page.evaluate(
                    "id => [...document.querySelectorAll('#runs tbody tr')].find(r => r.dataset.run === id).click()",
                    run,
                )
            page.wait_for_function(
                "n => document.querySelectorAll('#chart-steps polyline.curve').length === n", arg=curves
            )
            try:
                page.wait_for_function(
                    "() => [...document.querySelectorAll('video.eval-video')].every(v => v.readyState >= 2)",
                    timeout=30_000,
                )
            except PlaywrightTimeout:  # a video still being written, or one Chromium cannot decode
                print("warning: not every evaluation video loaded within 30 s", file=sys.stderr)
            for video in page.query_selector_all("#queries .pair video"):
                video.evaluate("v => v.currentTime = 0.3")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.close()
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", help="runs to show")
    parser.add_argument("--demo", action="store_true", help="show rendered demo runs instead (toolbox_demo.py)")
    parser.add_argument(
        "--run", action="append", default=[], help="a run to select (repeat; default: the two newest with a curve)"
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="PNG to write (media/toolbox.png is the README's picture)"
    )
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    args = parser.parse_args(argv)
    if bool(args.runs_dir) == args.demo:
        parser.error("pass either --runs-dir or --demo")
    if args.runs_dir and not Path(args.runs_dir).is_dir():
        parser.error(f"--runs-dir {args.runs_dir}: no such directory")
    if not (Path(args.chromium).is_file() or shutil.which(args.chromium)):
        parser.error(f"--chromium {args.chromium}: not found (Debian: apt-get install chromium)")
    if args.out.suffix.lower() != ".png" or args.out.is_dir():
        parser.error(f"--out {args.out}: must be a .png file")
    try:
        if args.demo:
            import toolbox_demo

            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp) / "runs"
                toolbox_demo.make_demo_runs(root, toolbox_demo.hopper_frames(), queries_per_session=4)
                screenshot(root, args.out, args.run, args.chromium)
        else:
            screenshot(Path(args.runs_dir), args.out, args.run, args.chromium)
    except ScreenshotError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError):
        print(f"{parser.prog}: error: cannot write {args.out}: a part of its path is a file", file=sys.stderr)
        return 2
    except OSError as e:  # not writable
        print(f"{parser.prog}: error: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
