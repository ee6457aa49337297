"""The scripts as a user runs them: by path, from the repo root and from framework/, with bad input."""

import subprocess
import sys

import pytest
from conftest import FRAMEWORK, REPO_ROOT
from script_runs import TINY_SAC_RLHF, argv


def run(args, cwd, timeout=300):
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.mark.slow  # whole-script runs: in .ci/run's second pytest step, not the default suite
def test_runs_from_the_repo_root_and_from_framework(tmp_path):
    flags = argv(TINY_SAC_RLHF, tmp_path, total_timesteps=500, evaluation_frequency=500, threads=1)
    root = run(["framework/sac_rlhf.py", *flags], cwd=REPO_ROOT)
    assert root.returncode == 0, root.stderr[-3000:]
    inside = run(["sac_rlhf.py", *flags, "--seed", "2"], cwd=FRAMEWORK)
    assert inside.returncode == 0, inside.stderr[-3000:]
    assert len(list(tmp_path.glob("Hopper-v5__sac_rlhf__*"))) == 2


def test_help_documents_every_flag():
    out = run(["framework/sac_rlhf.py", "-h"], cwd=REPO_ROOT, timeout=60)
    assert out.returncode == 0
    for flag in (
        "--teacher-feedback-total-queries",
        "--preference-sampling",
        "--no-autotune",
        "--teacher-sim-preset",
        "--no-unsupervised-exploration",
        "--trajectory-length",
        "--reward-net-ensemble-size",
    ):
        assert flag in out.stdout


BAD_INPUT = [
    (["--env-id", "Hoper-v5"], "Did you mean Hopper-v5"),
    (["--trajectory-length", "5000"], "longer than Hopper-v5's episodes"),
    (["--teacher-feedback-num-queries-per-session", "50", "--teacher-feedback-total-queries", "20"], "exceeds"),
    (["--teacher-feedback-total-queries", "-5"], "must be >= 0"),
    (["--total-timesteps", "-1"], "must be positive"),
    (["--total-explore-steps", "2000", "--total-timesteps", "1000", "--learning-starts", "500"], "leaves no steps"),
    (["--capture-video", "--render-mode", "human"], "cannot be used together"),
    (["--pref-buffer-size-sessions", "some"], "'all' or a positive integer"),
    (["--feedback-server-url", "ftp://x", "--teacher-feedback-mode", "human"], "must look like http://host:port"),
    (["--feedback-repeat-fraction", "1.5", "--teacher-feedback-mode", "human"], "must be in [0, 1]"),
    (["--feedback-double-fraction", "0.2"], "needs --teacher-feedback-mode human"),
    (["--feedback-exclude-labeller", "bob"], "needs --teacher-feedback-mode human"),
]


@pytest.mark.parametrize("flags, message", BAD_INPUT)
def test_bad_input_is_a_clear_error_before_training(tmp_path, capsys, flags, message):
    import sac_rlhf

    assert sac_rlhf.cli(["--runs-dir", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing was started


def test_bad_input_from_the_command_line(tmp_path):
    """The same checks as a user meets them: a one-line message, exit status 2, no traceback."""
    out = run(
        ["framework/sac_rlhf.py", "--runs-dir", str(tmp_path), "--trajectory-length", "5000"],
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert out.returncode == 2 and "longer than Hopper-v5's episodes" in out.stderr and "Traceback" not in out.stderr
    out = run(["framework/sac_rlhf.py", "--preference-sampling", "random"], cwd=REPO_ROOT, timeout=120)
    assert out.returncode == 2 and "invalid choice" in out.stderr + out.stdout


SCRIPTS = ("sac", "sac_rlhf", "ppo", "pref_ppo")


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_flag_of_every_script_has_help(name):
    """Every flag of Args(), not a sample: the attribute docstring tyro shows with -h is there and says something."""
    import dataclasses
    import importlib

    from tyro._docstrings import get_field_docstring

    args_type = importlib.import_module(name).Args
    args = args_type()  # builds with the defaults alone
    hidden = {"explore_batch_size", "explore_learning_starts"} if name == "pref_ppo" else set()  # Suppress[...]
    missing = []
    for field in dataclasses.fields(args):
        if field.name in hidden:
            continue
        owner = next(c for c in args_type.__mro__ if field.name in getattr(c, "__annotations__", {}))
        text = get_field_docstring(owner, field.name, ())
        if not text or len(text.split()) < 2:
            missing.append(field.name)
    assert not missing, f"{name}.py flags without help: {missing}"
    assert len(dataclasses.fields(args)) > (20 if name in ("sac", "ppo") else 60)
