"""run.json (rlhf.manifest): written atomically, kept across updates, validated on read, a killed run told apart."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rlhf.manifest import KNOWN_PATHS, ManifestError, effective_status, read_manifest, write_manifest
from rlhf.tracking import LOG_FILE


def test_updates_keep_what_was_recorded_and_list_the_files_that_exist(tmp_path):
    first = write_manifest(tmp_path, algorithm="sac", env_id="Hopper-v5", seed=3, status="running", step=0,
                           total_timesteps=100)  # fmt: skip
    (tmp_path / "args.json").write_text("{}")
    (tmp_path / "checkpoints" / "final").mkdir(parents=True)
    second = write_manifest(tmp_path, status="finished", step=100)
    assert second["created"] == first["created"] and second["updated"] >= first["updated"]
    assert (second["algorithm"], second["seed"], second["total_timesteps"], second["step"]) == ("sac", 3, 100, 100)
    assert second["paths"] == {"args": "args.json", "checkpoint_final": "checkpoints/final"}
    assert read_manifest(tmp_path) == second
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    with pytest.raises(ValueError, match="run status 'done'"):
        write_manifest(tmp_path, status="done")


def test_the_log_file_name_is_the_trackers():
    assert KNOWN_PATHS["log"] == LOG_FILE


GOOD = {"format_version": 1, "algorithm": "sac", "env_id": "Hopper-v5", "seed": 1, "status": "finished", "step": 5}


@pytest.mark.parametrize(
    "text, needle",
    [
        ("{", "not JSON"),
        ("[1]", "not a JSON object"),
        (json.dumps({**GOOD, "step": "5"}), "field 'step' must be int"),
        (json.dumps({**GOOD, "seed": True}), "field 'seed' must be int"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "env_id"}), "field 'env_id'"),
        (json.dumps({**GOOD, "status": "lost"}), "field 'status' must be one of"),
        (json.dumps({**GOOD, "format_version": 2}), "newer than this code's"),
        (json.dumps({**GOOD, "paths": []}), "field 'paths'"),
    ],
)
def test_a_bad_manifest_is_one_line_naming_the_file(tmp_path, text, needle):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(ManifestError, match=needle) as e:
        read_manifest(tmp_path)
    assert str(tmp_path / "run.json") in str(e.value) and "\n" not in str(e.value)


def test_a_run_without_a_manifest_reads_none(tmp_path):
    assert read_manifest(tmp_path) is None


def test_a_running_run_whose_process_died_reads_stopped(tmp_path):
    write_manifest(tmp_path, **{**GOOD, "status": "running"})
    assert effective_status(read_manifest(tmp_path)) == "running"  # this process: alive
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    manifest = {**read_manifest(tmp_path), "pid": gone.pid}
    assert effective_status(manifest) == "stopped"
    assert effective_status({**manifest, "host": "another-node"}) == "running"  # cannot be checked from here
    assert effective_status({**manifest, "status": "finished"}) == "finished"


def test_a_crash_is_recorded_as_crashed_at_its_step(tmp_path, monkeypatch):
    import ppo
    from script_runs import argv, raising_on_call, run_in_process
    from test_ppo_scripts import TINY_PPO

    failing = raising_on_call(ppo.ppo_update, 2, RuntimeError("a bug in the second update"))
    monkeypatch.setattr(ppo, "ppo_update", failing)
    with pytest.raises(RuntimeError, match="second update"):
        run_in_process(ppo, argv(TINY_PPO, tmp_path))
    (run_dir,) = list(tmp_path.iterdir())
    manifest = read_manifest(run_dir)
    assert (manifest["algorithm"], manifest["status"], manifest["step"]) == ("ppo", "crashed", 128)


def test_a_second_ctrl_c_after_the_final_save_still_reads_interrupted(tmp_path, monkeypatch):
    """A second SIGINT that arrives during the interrupt's checkpoint save is raised once the save is done (rlhf.
    checkpoint.signals_deferred); the checkpoint is complete, so the run is "interrupted", not "crashed" (seen with
    `timeout -s INT`, which signals uv and python both)."""
    import ppo
    from script_runs import argv, raising_on_call, run_in_process
    from test_ppo_scripts import TINY_PPO

    from rlhf.run import Run

    def save_then_interrupt(self, final):
        original_save(self, final)
        if final:
            raise KeyboardInterrupt  # the deferred second Ctrl-C

    original_save = Run.save
    monkeypatch.setattr(ppo, "ppo_update", raising_on_call(ppo.ppo_update, 2, KeyboardInterrupt()))
    monkeypatch.setattr(Run, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_in_process(ppo, argv(TINY_PPO, tmp_path))
    (run_dir,) = list(tmp_path.iterdir())
    assert (read_manifest(run_dir)["status"], read_manifest(run_dir)["step"]) == ("interrupted", 128)
