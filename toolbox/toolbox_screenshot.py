"""Screenshot of the toolbox comparing runs (media/toolbox.png), taken with Playwright and Debian's Chromium.

uv run python toolbox/toolbox_screenshot.py --runs-dir runs                # the two newest runs
uv run python toolbox/toolbox_screenshot.py --demo                         # rendered demo runs (toolbox_demo.py)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def screenshot(runs_dir: Path, out: Path, runs: list[str], chromium: str, height: int = 2000) -> None:
    from playwright.sync_api import sync_playwright
    from toolbox_app import create_app
    from waitress import create_server

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
            ids = runs or page.eval_on_selector_all("#runs tbody tr", "rs => rs.map(r => r.dataset.run)")[:2]
            for run in ids:
                page.click(f"#runs tbody tr[data-run='{run}']")
            page.wait_for_function(
                "n => document.querySelectorAll('#chart-steps polyline.curve').length === n", arg=len(ids)
            )
            page.wait_for_function(
                "() => [...document.querySelectorAll('video.eval-video')].every(v => v.readyState >= 2)",
                timeout=30_000,
            )
            for video in page.query_selector_all("#queries .pair video"):
                video.evaluate("v => v.currentTime = 0.3")
            page.wait_for_timeout(1500)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.close()
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", help="runs to show")
    parser.add_argument("--demo", action="store_true", help="show rendered demo runs instead (toolbox_demo.py)")
    parser.add_argument("--run", action="append", default=[], help="a run to select (repeat; default: two newest)")
    parser.add_argument("--out", default=str(HERE.parent / "media" / "toolbox.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    if bool(args.runs_dir) == args.demo:
        parser.error("pass either --runs-dir or --demo")
    if args.demo:
        import toolbox_demo

        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "runs"
            toolbox_demo.make_demo_runs(root, toolbox_demo.hopper_frames(), queries_per_session=4)
            screenshot(root, Path(args.out), args.run or [], args.chromium)
    else:
        screenshot(Path(args.runs_dir), Path(args.out), args.run, args.chromium)
    return 0


if __name__ == "__main__":
    sys.exit(main())
