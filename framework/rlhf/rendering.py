"""The OpenGL backend MuJoCo renders with, chosen before mujoco / dm_control are imported, and clear errors where
rendering cannot work (a live viewer, or glfw offscreen, without a display)."""

from __future__ import annotations

import functools
import os

from rlhf.config import ConfigError


def configure_headless_rendering(render_mode: str = "") -> None:
    """Choose an OpenGL backend before mujoco / dm_control are imported.

    With no ``MUJOCO_GL`` set and no display, MuJoCo cannot render at all; EGL renders offscreen on CPU-only
    machines through Mesa's llvmpipe. A ``DISPLAY`` is not used for offscreen rendering either, so one that points
    at no X server (issue 9, item 11) does not matter. A user's own choice (osmesa, glfw under xvfb) is always
    honoured, and the live viewer (``render_mode == "human"``) needs glfw, so EGL is not forced then.
    """
    if "MUJOCO_GL" in os.environ:
        return
    if render_mode == "human":
        os.environ["MUJOCO_GL"] = "glfw"  # pinned so that later headless defaults cannot switch it to egl
        return
    os.environ["MUJOCO_GL"] = "egl"
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


@functools.lru_cache(maxsize=1)
def _display_error() -> str | None:
    """Why glfw cannot open a window here (None when it can).

    glfw's init fails cleanly when the X server named by DISPLAY is unreachable, but MuJoCo's viewer goes on to
    ask for the monitor's video mode and glfw aborts the process in C (``Assertion `monitor != NULL'``, exit
    134, issue 9 item 11), so ask first."""
    import sys
    import warnings

    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not display:
        return "no display is set (DISPLAY)"
    try:
        import glfw
    except ImportError as e:  # pragma: no cover - glfw is a dependency of gymnasium[mujoco]
        return f"glfw cannot be imported ({e})"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # glfw reports its error as a warning; the message below says it
        ok = glfw.init()
    if not ok:
        return f"the display {display!r} cannot be opened (is an X server running there?)"
    glfw.terminate()
    return None


def check_render_mode(render_mode: str) -> None:
    """The live viewer needs a reachable display; fail before training rather than deep inside glfw."""
    if render_mode == "human" and (why := _display_error()):
        raise ConfigError(
            f"--render-mode human needs a display and {why}; run under `xvfb-run -- ...` or leave the flag out"
        )


def check_offscreen_backend() -> None:
    """MUJOCO_GL=glfw renders offscreen through a hidden window, which needs a display too: say so clearly."""
    if os.environ.get("MUJOCO_GL") == "glfw" and (why := _display_error()):
        raise ConfigError(
            f"MUJOCO_GL=glfw needs a display to render and {why}; unset MUJOCO_GL to render headless with EGL, "
            "or run under `xvfb-run -- ...`"
        )
