"""Exact resume for all four scripts: a run killed with SIGKILL after a periodic checkpoint and resumed with
--resume ends in the same state (weights, optimizers, labels, random generators, step) and with the same final
evaluation as the same run uninterrupted. Also: the flags a resume may and may not change, damaged checkpoint
metadata, SIGTERM, and two SIGINTs during a checkpoint save (issue 9, items 3, 7, 10)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from script_runs import TINY_SAC_RLHF, argv, run_in_process, scalars
from test_ppo_scripts import TINY_PPO
from test_pref_ppo_labels import TINY_PREF_PPO
from test_sac import TINY_SAC

from rlhf.checkpoint import CheckpointError, load_state
from rlhf.manifest import read_manifest

RESUMABLE = {
    "sac_rlhf": {**TINY_SAC_RLHF, "--total-timesteps": 1500, "--checkpoint-frequency": 400,
                 "--teacher-feedback-total-queries": 25, "--evaluation-frequency": 750},
    "sac": {**TINY_SAC, "--total-timesteps": 1500, "--checkpoint-frequency": 400, "--evaluation-frequency": 750},
    "ppo": {**TINY_PPO, "--total-timesteps": 2048, "--checkpoint-frequency": 384},
    "pref_ppo": {**TINY_PREF_PPO, "--total-timesteps": 2048, "--checkpoint-frequency": 512},
}  # fmt: skip
FINAL_STEP = {"sac_rlhf": 1500, "sac": 1500, "ppo": 2048, "pref_ppo": 2048}
WALL_CLOCK = {"idle_seconds"}  # seconds waited for answers: the one saved value that is not computed


def script(name: str, *args: str) -> list[str]:
    return [sys.executable, f"framework/{name}.py", *args]


def run(cmd: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def assert_same_tree(a, b, path: str = "") -> None:
    """Two checkpoint trees equal leaf by leaf (tensors and arrays exactly)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            if k not in WALL_CLOCK:
                assert_same_tree(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tree(x, y, f"{path}.{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def kill_after_first_checkpoint(name: str, flags: list[str], runs: Path) -> Path:
    proc = subprocess.Popen(script(name, *flags), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and not list(runs.glob("*/checkpoints/resume/state.json")):
        assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.stderr.read()[-2000:]}"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run_dir,) = runs.iterdir()
    assert not (run_dir / "checkpoints" / "final.json").exists(), "it finished before the kill"
    return run_dir


@pytest.mark.slow  # whole-script runs: in .ci/run's second pytest step, not the default suite
@pytest.mark.timeout(900)  # three runs of the script in one test: 2-4 minutes when the cores are shared
@pytest.mark.parametrize("name", list(RESUMABLE))
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, name):
    flags = [*argv(RESUMABLE[name], tmp_path / "whole"), "--threads", "1"]
    whole = run(script(name, *flags))
    assert whole.returncode == 0, whole.stderr[-3000:]
    (whole_dir,) = (tmp_path / "whole").iterdir()

    run_dir = kill_after_first_checkpoint(name, [*argv(RESUMABLE[name], tmp_path / "killed"), "--threads", "1"],
                                          tmp_path / "killed")  # fmt: skip
    saved_args = (run_dir / "args.json").read_bytes()
    resumed = run(script(name, "--resume", str(run_dir), "--no-progress-bar", "--threads", "1", "--log-level", "INFO"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr

    a, b = load_state(whole_dir / "checkpoints" / "final"), load_state(run_dir / "checkpoints" / "final")
    assert a["step"] == b["step"] == FINAL_STEP[name]
    a.pop("args"), b.pop("args")  # runs_dir differs
    assert_same_tree(a, b)
    if name in ("sac_rlhf", "pref_ppo"):  # the labels the killed run kept in its dataset, continued by the resume
        from rlhf.pref_dataset import read

        labels_a, labels_b = read(whole_dir / "preferences.safetensors"), read(run_dir / "preferences.safetensors")
        assert labels_a.query_ids == labels_b.query_ids and len(labels_a) == len(a["feedback"]["preferences"]["labels"])
        assert np.array_equal(labels_a.labels, labels_b.labels) and np.array_equal(
            labels_a.seg_b.obs, labels_b.seg_b.obs
        )
    final_a, final_b = scalars(whole_dir)["eval/mean_return"][-1], scalars(run_dir)["eval/mean_return"][-1]
    assert final_a == final_b and final_a[0] == FINAL_STEP[name]  # the same final evaluation
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # the resumed run appends to the same run
    # the run's flags stay its own; what the resume changed is recorded next to them
    assert (run_dir / "args.json").read_bytes() == saved_args
    (record,) = [json.loads(line) for line in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert record["flags"] == {"log_level": "INFO"} and 0 < record["step"] < FINAL_STEP[name]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    import sac

    runs = tmp_path_factory.mktemp("finished")
    assert sac.cli(argv(RESUMABLE["sac"], runs, total_timesteps=400, evaluation_frequency=400)) == 0
    (run_dir,) = runs.iterdir()
    return run_dir


def resume_in_process(capsys, *flags: str) -> tuple[int, str]:
    """(exit status, stderr) of ``sac.py --resume …`` through the scripts' own command-line entry (rlhf.cli.run_cli,
    which prints the one-line error), in this process: these cases end before training, where a new interpreter
    would spend most of its time importing torch (tests/test_cli.py runs the scripts as processes)."""
    import sac

    capsys.readouterr()
    code = sac.cli(["--resume", *flags])
    return code, capsys.readouterr().err


def copy_run(run_dir: Path, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run_dir, to / run_dir.name))


def edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def set_step(value):
    def edit(meta):
        tree = dict(meta["tree"]["__dict__"])
        tree["step"] = value
        meta["tree"]["__dict__"] = [[k, v] for k, v in tree.items()]

    return edit


DAMAGE = {
    "step as a string": ("checkpoints/resume/state.json", set_step("12"), "step must be an integer"),
    "negative step": ("checkpoints/resume/state.json", set_step(-5), "step must be an integer"),
    "step beyond the run": ("checkpoints/resume/state.json", set_step(10**9), "step must be an integer"),
    "args.json: a string for an integer": ("args.json", lambda a: a.update(batch_size="32"), "--batch-size"),
    "args.json: an unknown flag": ("args.json", lambda a: a.update(no_such_flag=1), "'no_such_flag'"),
    "args.json: not an object": ("args.json", lambda a: a.clear() or a.update(x=[1]), "'x'"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_edited_checkpoint_metadata_is_a_one_line_error(finished_run, tmp_path, capsys, case):
    relative, edit, needle = DAMAGE[case]
    run_dir = copy_run(finished_run, tmp_path)
    edit_json(run_dir / relative, edit)
    code, err = resume_in_process(capsys, str(run_dir))
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert needle in line and relative.split("/")[-1] in line, line  # names the file


def test_resume_of_a_damaged_checkpoint_is_a_clear_error(finished_run, tmp_path, capsys):
    run_dir = copy_run(finished_run, tmp_path)
    blob = run_dir / "checkpoints" / "resume" / "replay_buffer.safetensors"
    blob.write_bytes(blob.read_bytes()[:1000])
    code, err = resume_in_process(capsys, str(run_dir))
    assert code == 2
    assert "does not match its checksum" in err and "Traceback" not in err
    with pytest.raises(CheckpointError):
        load_state(blob.with_suffix(""))


def test_resume_refuses_flags_that_would_change_the_run(finished_run, capsys):
    code, err = resume_in_process(capsys, str(finished_run), "--batch-size", "64", "--seed", "3")
    assert code == 2 and "Traceback" not in err
    assert "--batch-size, --seed cannot be changed" in err


@pytest.mark.slow  # whole-script runs: in .ci/run's second pytest step, not the default suite
def test_sigterm_saves_a_checkpoint_that_resumes(tmp_path):
    """A cluster scheduler's SIGTERM is handled like Ctrl-C: a checkpoint is written and the run can continue."""
    flags = argv(RESUMABLE["sac_rlhf"], tmp_path, checkpoint_frequency=100_000)
    proc = subprocess.Popen(script("sac_rlhf", *flags), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and not list(tmp_path.glob("*/exploration/agent.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    (run_dir,) = tmp_path.iterdir()
    step = load_state(run_dir / "checkpoints" / "final")["step"]
    # 299 when the signal lands inside the exploration save that ends step index 299 (seen in CI under load): the
    # steps completed are then 299, and the resumed run repeats that last exploration step and its save
    assert 299 <= step < 1500
    resumed = run(script("sac_rlhf", "--resume", str(run_dir), "--no-progress-bar"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_state(run_dir / "checkpoints" / "final")["step"] == 1500


@pytest.mark.slow  # whole-script runs: in .ci/run's second pytest step, not the default suite
def test_two_sigints_during_a_checkpoint_save_keep_a_resumable_checkpoint(tmp_path):
    """A second Ctrl-C 0.1 s after the first lands in the checkpoint save the first one started (a large replay
    buffer makes the save take a while); the run still leaves a complete checkpoint, and --resume finishes it."""
    flags = argv(RESUMABLE["sac"], tmp_path, total_timesteps=30_000, checkpoint_frequency=2_000,
                 evaluation_frequency=30_000, learning_starts=29_000)  # fmt: skip
    proc = subprocess.Popen(script("sac", *flags), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and not list(tmp_path.glob("*/checkpoints/resume/state.json")):
        assert proc.poll() is None
        time.sleep(0.02)
    time.sleep(1.0)  # a larger buffer: a slower save
    proc.send_signal(signal.SIGINT)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "checkpoints" / "resume.tmp").exists()
    step = load_state(run_dir / "checkpoints" / "resume" / "state")["step"]
    assert 2_000 <= step < 30_000
    assert read_manifest(run_dir)["status"] == "interrupted"  # not "crashed": the second Ctrl-C waited for the save
    resumed = run(script("sac", "--resume", str(run_dir), "--no-progress-bar"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_state(run_dir / "checkpoints" / "final")["step"] == 30_000
    manifest = read_manifest(run_dir)
    assert (manifest["status"], manifest["step"], manifest["resumes"]) == ("finished", 30_000, 1)


def test_an_interrupt_inside_a_bundle_save_waits_for_the_save(tmp_path, monkeypatch):
    """Deterministic version of the above: SIGINT arrives while a part of the bundle is being written."""
    import os

    from rlhf import checkpoint

    checkpoint.save_bundle(tmp_path / "resume", {"state": {"step": 1}, "big": {"x": np.zeros(3)}})
    original = checkpoint.save_state

    def interrupted_save(path, state):
        os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler at the next bytecode: inside the save
        return original(path, state)

    monkeypatch.setattr(checkpoint, "save_state", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_bundle(tmp_path / "resume", {"state": {"step": 2}, "big": {"x": np.ones(3)}})
    monkeypatch.setattr(checkpoint, "save_state", original)
    bundle = checkpoint.load_bundle(tmp_path / "resume", ("state", "big"))
    assert bundle["state"]["step"] == 2 and bundle["big"]["x"].tolist() == [1, 1, 1]  # the new one, complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resume"]


def test_an_interrupt_inside_a_label_update_waits_for_the_whole_session(tmp_path, monkeypatch):
    """SIGINT (SIGTERM takes the same path) raised between storing a session's A and B segments used to save a
    checkpoint whose preferences did not pair up. Checked against the code without the loop's deferral: the final
    checkpoint then held 10 A segments and 5 B segments, and this test failed on the pairing assertion."""
    import os

    import sac_rlhf

    from rlhf.preferences import PreferenceDataset
    from rlhf.segments import Segments

    armed, calls = [False], []
    original_add, original_concatenate = PreferenceDataset.add, Segments.concatenate

    def add(self, *a, **k):
        armed[0] = True
        try:
            return original_add(self, *a, **k)
        finally:
            armed[0] = False

    def concatenate(parts):
        out = original_concatenate(parts)
        if armed[0]:
            calls.append(1)
            if len(calls) == 4:  # the second session's B segments: its A segments are already stored
                os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(PreferenceDataset, "add", add)
    monkeypatch.setattr(Segments, "concatenate", staticmethod(concatenate))
    with pytest.raises(KeyboardInterrupt):
        run_in_process(sac_rlhf, argv(TINY_SAC_RLHF, tmp_path))
    (run_dir,) = tmp_path.iterdir()
    state = load_state(run_dir / "checkpoints" / "final")
    prefs = state["feedback"]["preferences"]
    sizes = {len(prefs["a_obs"]), len(prefs["b_obs"]), len(prefs["labels"]), len(prefs["session"])}
    assert sizes == {10}, sizes  # both sessions whole, none half
    assert state["feedback"]["stats"]["total_labels"] == 10 and state["feedback"]["next_session"] == 2
