"""The page in a real browser (Playwright driving Debian's headless Chromium) against the server started with the
documented command: it lists the runs, two selected runs get their curves drawn (against steps and against labels),
their evaluation videos load and play, and their queried clip pairs show with their labels.

``TOOLBOX_SCREENSHOT=media/toolbox.png uv run pytest tests/toolbox -k browser`` also writes the README screenshot
(toolbox/toolbox_screenshot.py takes a nicer one from rendered demo runs)."""

from __future__ import annotations

import os

import pytest

from .toolbox_testutil import CHROMIUM_ARGS, ToolboxServer

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

PEBBLE, PEBBLE2 = "Hopper-v5__sac_rlhf__1__1760000000", "Hopper-v5__sac_rlhf__2__1760000500"
VIDEOS_PLAYING = (
    "() => { const v = [...document.querySelectorAll('#videos video.eval-video')];"
    " return v.length === 2 && v.every(x => x.readyState >= 2 && x.videoWidth > 0 && !x.error); }"
)


@pytest.fixture(scope="module")
def server(runs_root):
    s = ToolboxServer(runs_root)
    yield s
    s.close()


@pytest.fixture(scope="module")
def page(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        browser.close()


def test_lists_runs_compares_two_and_plays_their_videos(server, page, tmp_path):
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server.url)
    page.wait_for_selector(f"#runs tbody tr[data-run='{PEBBLE}']")
    rows = page.eval_on_selector_all("#runs tbody tr", "rows => rows.map(r => r.dataset.run)")
    assert PEBBLE in rows and PEBBLE2 in rows and "Hopper-v5__sac__1__1760001000" in rows
    assert page.is_hidden("#compare")
    row = page.locator(f"#runs tbody tr[data-run='{PEBBLE}']")
    assert "sac_rlhf" in row.inner_text() and "6" in row.inner_text() and "finished" in row.inner_text()
    broken = page.locator("#runs tbody tr[data-run='Walker2d-v5__ppo__3__1760002000'] td.status")
    assert broken.inner_text() == "stopped"  # run.json says running; its process is gone

    page.click(f"#runs tbody tr[data-run='{PEBBLE}']")
    page.check(f"#runs tbody tr[data-run='{PEBBLE2}'] input[type=checkbox]")
    page.wait_for_function("() => document.querySelectorAll('#chart-steps polyline.curve').length === 2")
    page.wait_for_function("() => document.querySelectorAll('#chart-labels polyline.curve').length === 2")
    assert page.inner_text("#selection-info") == "2 runs compared"
    drawn = page.eval_on_selector_all(
        "#chart-steps polyline.curve", "ls => ls.map(l => l.getAttribute('points').split(' ').length)"
    )
    assert drawn == [20, 20]

    page.wait_for_function(VIDEOS_PLAYING, timeout=20_000)
    # the slider picks the video of another evaluation step
    slider = page.locator(f"#videos .column[data-run='{PEBBLE}'] input[type=range]")
    slider.fill("0")
    page.wait_for_function(
        f"() => document.querySelector(\"#videos .column[data-run='{PEBBLE}'] video.eval-video\")"
        ".src.endsWith('step_00033333.mp4')"
    )
    assert "step 33,333" in page.inner_text(f"#videos .column[data-run='{PEBBLE}'] .step-info")
    # the other run's slider followed (linked by default) to its evaluation at the same step
    assert "step 33,333" in page.inner_text(f"#videos .column[data-run='{PEBBLE2}'] .step-info")
    # evaluation.py's statistics, and when unfolded its plot, which decodes
    summary = page.locator(f"#videos .column[data-run='{PEBBLE}'] details.final summary")
    assert "10 ± 1 over 2 episodes" in summary.inner_text()
    summary.click()
    page.wait_for_function(
        "() => { const i = document.querySelector('#videos img.plot'); return i && i.naturalWidth === 2; }"
    )
    page.wait_for_function(VIDEOS_PLAYING, timeout=20_000)

    # queried pairs of the latest session, with their labels; a clip decodes
    page.wait_for_selector(f"#queries .column[data-run='{PEBBLE}'] .pair")
    badges = page.eval_on_selector_all(
        f"#queries .column[data-run='{PEBBLE}'] .badge", "bs => bs.map(b => b.textContent)"
    )
    assert badges == ["equally good", "skipped"]
    page.wait_for_function(
        "() => { const v = document.querySelector('#queries .pair video'); return v && v.readyState >= 1; }"
    )

    # the other metric redraws; the selection survives a reload through the URL
    page.select_option("#metric", "reward_model/val_accuracy")
    page.wait_for_function("() => document.getElementById('caption-labels').textContent.startsWith('reward model')")
    page.reload()
    page.wait_for_function("() => document.querySelectorAll('#chart-steps polyline.curve').length === 2")
    page.select_option("#metric", "charts/episodic_return")
    page.wait_for_function(VIDEOS_PLAYING, timeout=20_000)
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(tmp_path / "toolbox.png"), full_page=True)
    if os.environ.get("TOOLBOX_SCREENSHOT"):
        page.screenshot(path=os.environ["TOOLBOX_SCREENSHOT"], full_page=True)
    assert (tmp_path / "toolbox.png").read_bytes()[:4] == b"\x89PNG"
    assert not errors, errors
