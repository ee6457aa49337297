import re
from pathlib import Path

from rlhf.tracking import run_name


def test_run_names_are_safe_ids():
    name = run_name("dm_control/walker-walk-v0", "my exp: 1/2", 3)
    assert name.startswith("dm_control-walker-walk-v0__my-exp-1-2__3__")
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", name)  # the labelling server's run-id rule


SECRET = "tracking-secret-4e1b7d9a0c"  # a string found nowhere else, to look for


def test_recorded_args_and_argv_hide_secrets():
    import sac_rlhf

    from rlhf.tracking import recorded_args, redacted_argv

    config = recorded_args(sac_rlhf.Args(feedback_server_token=SECRET))
    assert config["feedback_server_token"] == "<redacted>" and config["seed"] == 1
    assert recorded_args(sac_rlhf.Args())["feedback_server_token"] is None  # unset stays unset
    argv = ["x.py", "--feedback-server-token", SECRET, f"--feedback_server_token={SECRET}", "--seed", "3"]
    assert SECRET not in " ".join(redacted_argv(argv)) and redacted_argv(argv)[-2:] == ["--seed", "3"]


def test_resume_takes_the_token_from_its_own_call(tmp_path):
    """args.json holds no token, so a resumed run gets it from its own flags or $FEEDBACK_SERVER_TOKEN."""
    import json

    import sac_rlhf

    from rlhf.cli import resumed_args
    from rlhf.tracking import recorded_args

    (tmp_path / "args.json").write_text(json.dumps(recorded_args(sac_rlhf.Args(feedback_server_token=SECRET, seed=7))))
    again, _ = resumed_args(sac_rlhf.Args(resume=str(tmp_path), feedback_server_token="given-again-0123456789"))
    assert again.seed == 7 and again.feedback_server_token == "given-again-0123456789"
    assert resumed_args(sac_rlhf.Args(resume=str(tmp_path)))[0].feedback_server_token is None


def test_tracked_run_keeps_secrets_out_and_its_wandb_dir_holds_no_links_into_itself(tmp_path, monkeypatch):
    """--track with W&B offline (conftest): no file of the run holds the token (args.json, checkpoint, TensorBoard
    hyperparameter text, W&B config and command line), no link under <run>/wandb/ points into its own ancestors
    (issue 9, item 8: W&B's TensorBoard sync copied the logdir into itself), and a TensorBoard reader finds one run."""
    import sac_rlhf
    from script_runs import TINY_SAC_RLHF, argv, run_in_process
    from tensorboard.backend.event_processing.io_wrapper import GetLogdirSubdirectories

    from rlhf.checkpoint import load_state

    flags = argv(TINY_SAC_RLHF, tmp_path, "--track", "--feedback-server-token", SECRET, total_timesteps=600)
    monkeypatch.setattr("sys.argv", ["sac_rlhf.py", *flags])  # what W&B records as the command line
    run_dir = Path(run_in_process(sac_rlhf, flags)["run_dir"])

    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    for path in run_dir.rglob("*"):
        if path.is_symlink():
            assert path.resolve() not in path.parents, path  # a link to its own ancestor: a cycle
        inside = path.relative_to(run_dir).parts
        assert run_dir.name not in inside and len(inside) < 8, path  # the run copied into itself, level by level
        assert not (path.name.startswith("events.out.tfevents") and "wandb" in inside), path  # TensorBoard: a run
    assert sorted(GetLogdirSubdirectories(str(tmp_path))) == [str(run_dir)]

    leaks = [p for p in run_dir.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaks, leaks
    assert load_state(run_dir / "checkpoints" / "final")["args"]["feedback_server_token"] == "<redacted>"
