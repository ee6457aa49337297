"""framework/sweep.py: the sweep YAML checked against the scripts' flags, Optuna's samplers and storage, trials
that really run the scripts on fixed seeds, and the W&B trial function up to the network boundary (offline)."""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import sweep
import yaml

from rlhf.runs import read_scalars
from rlhf.sweep_optuna import make_objective, make_pruner, make_sampler, make_storage, open_study, study_attrs, suggest
from rlhf.sweep_space import EVAL_METRICS, load_spec, script_args_type, to_flags
from rlhf.sweep_trials import default_threads, run_trial
from rlhf.sweep_wandb import make_wandb_trial, wandb_sweep_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "sweep_config").glob("*.yaml"))
# a run of sac.py that takes seconds: two evaluations (steps 100 and 200)
TINY_SAC = ["--env-id", "InvertedPendulum-v5", "--total-timesteps", "200", "--learning-starts", "50",
            "--batch-size", "16", "--actor-and-q-net-hidden-dim", "16", "--buffer-size", "500",
            "--evaluation-frequency", "100", "--evaluation-episodes", "1", "--log-frequency", "50"]  # fmt: skip
SAC_SWEEP = {
    "method": "random",
    "metric": {"name": "eval/mean_return", "goal": "maximize"},
    "parameters": {
        "policy_lr": {"distribution": "log_uniform_values", "min": 0.0001, "max": 0.001},
        "alpha": {"values": [0.1, 0.3]},
    },
}


def logged_values(blob: bytes, key: bytes) -> list:
    """Every JSON value recorded right after ``key`` in an offline W&B transaction log (its protobuf records keep
    an item's key and then its ``value_json``, field 16: bytes 0x82 0x01, a length, the JSON text)."""
    out = []
    for m in re.finditer(re.escape(key) + rb"\x82\x01", blob):
        n = blob[m.end()]
        try:
            out.append(json.loads(blob[m.end() + 1 : m.end() + 1 + n]))
        except ValueError:
            pass
    return out


def write(tmp_path: Path, config: dict, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


# ---- every committed configuration -----------------------------------------------------------------------------


def test_every_task_has_a_sweep_configuration():
    mujoco = ["Ant", "HalfCheetah", "Hopper", "Humanoid", "HumanoidStandup", "InvertedDoublePendulum",
              "InvertedPendulum", "Pusher", "Reacher", "Swimmer", "Walker2d"]  # fmt: skip
    expected = {f"{m}-v5" for m in mujoco} | {
        f"dm_control-{t}" for t in ("walker-walk", "cheetah-run", "quadruped-walk")
    }
    assert {p.stem for p in CONFIGS} == expected


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_committed_configuration_validates(path):
    spec = load_spec(path, "sac-rlhf")
    assert spec.metric == "eval/mean_return" and spec.goal == "maximize"
    assert path.read_text().startswith("# PEBBLE on ")  # the one-line description
    env_id = spec.params["env_id"].values[0]
    assert env_id.removeprefix("dm_control/").removesuffix("-v0") in path.stem
    searched = {n for n, p in spec.params.items() if p.kind != "constant"}
    assert {"teacher_learning_rate", "teacher_update_epochs", "trajectory_length", "policy_lr", "q_lr",
            "teacher_feedback_num_queries_per_session", "preference_sampling", "teacher_feedback_schedule"} <= searched  # fmt: skip
    # every session size fits the task's label budget, every segment fits its episodes
    total = spec.params["teacher_feedback_total_queries"].values[0]
    assert max(spec.params["teacher_feedback_num_queries_per_session"].values) <= total
    from rlhf.envs import env_info, make_env

    if not env_id.startswith("dm_control"):  # (dm_control episodes are 1000 steps; building them is slow)
        env = make_env(env_id, seed=0)
        assert max(spec.params["trajectory_length"].values) <= env_info(env).max_episode_steps
        env.close()


# ---- errors before anything runs -------------------------------------------------------------------------------

BAD = {
    "unknown top-level key": ({**SAC_SWEEP, "metrics": {}}, "unknown key(s) ['metrics']"),
    "not a flag of the script": (
        {**SAC_SWEEP, "parameters": {"teacher_learning_rate": {"values": [0.001, 0.002]}}},
        "parameter 'teacher_learning_rate' is not a flag of sac.py",
    ),
    "typo in a flag": ({**SAC_SWEEP, "parameters": {"policy_lrr": {"values": [0.1]}}}, "is not a flag of sac.py"),
    "seed searched": ({**SAC_SWEEP, "parameters": {"seed": {"values": [1, 2]}}}, "seeds are set by --seeds"),
    "unknown distribution": (
        {**SAC_SWEEP, "parameters": {"policy_lr": {"distribution": "log_normal", "min": 0.1, "max": 1.0}}},
        "distribution 'log_normal' is not supported",
    ),
    "min above max": (
        {**SAC_SWEEP, "parameters": {"policy_lr": {"distribution": "uniform", "min": 0.1, "max": 0.01}}},
        "min (0.1) must be below max (0.01)",
    ),
    "log of zero": (
        {**SAC_SWEEP, "parameters": {"policy_lr": {"distribution": "log_uniform_values", "min": 0, "max": 1}}},
        "needs min > 0",
    ),
    "min as a string (1e-4 is a string in YAML)": (
        {**SAC_SWEEP, "parameters": {"policy_lr": {"distribution": "uniform", "min": "1e-4", "max": 0.1}}},
        "min must be a number",
    ),
    "unknown parameter key": (
        {**SAC_SWEEP, "parameters": {"alpha": {"values": [0.1], "mu": 0}}},
        "unknown key(s) ['mu']",
    ),
    "a value the flag rejects": (
        {**SAC_SWEEP, "parameters": {"target_network_frequency": {"values": [1, 1.5]}}},
        "1.5 is not a valid value of --target-network-frequency",
    ),
    "the original's never-logged metric": (
        {**SAC_SWEEP, "metric": {"name": "evaluate/mean", "goal": "maximize"}},
        "metric 'evaluate/mean' is not logged by the scripts",
    ),
    "grid over a distribution": ({**SAC_SWEEP, "method": "grid"}, "method grid needs value or values"),
    "bad method": ({**SAC_SWEEP, "method": "hyperopt"}, "method must be grid, random or bayes"),
    "program of another script": ({**SAC_SWEEP, "program": "framework/ppo.py"}, "does not match --algorithm sac"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_configuration_is_one_line_error_before_anything_runs(case, tmp_path, capsys):
    config, message = BAD[case]
    storage = tmp_path / "study.log"
    argv = ["--config-filename", str(write(tmp_path, config)), "--algorithm", "sac", "--storage", str(storage),
            "--runs-dir", str(tmp_path / "runs"), "--sweep-count", "1", "--", *TINY_SAC]  # fmt: skip
    assert sweep.cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert message in err
    assert not storage.exists() and not (tmp_path / "runs").exists()


def test_bad_sweep_flags(tmp_path, capsys):
    path = str(write(tmp_path, SAC_SWEEP))
    for argv, message in [
        (["--seeds", "1"], "--seeds needs at least 2 distinct seeds"),
        (["--seeds", "3", "3"], "--seeds needs at least 2 distinct seeds"),
        (["--", "--no-such-flag", "1"], "flags after '--' are not valid flags of sac.py"),
        (["--", "--policy-lr", "0.001"], "is searched and also given after '--'"),
        (["--", "--seed", "4"], "--seed after '--' is set by the sweep itself"),
    ]:
        assert sweep.cli(["--config-filename", path, "--algorithm", "sac", *argv]) == 2
        assert message in capsys.readouterr().err


def test_flags_after_double_dash_override_yaml_constants(tmp_path):
    config = {**SAC_SWEEP, "parameters": {**SAC_SWEEP["parameters"], "total_timesteps": {"value": 10**6}}}
    spec = load_spec(write(tmp_path, config), "sac", ["--total-timesteps", "200"])
    assert "total_timesteps" not in spec.params and spec.fixed == ["--total-timesteps", "200"]


# ---- W&B's schema on Optuna ------------------------------------------------------------------------------------


def test_distributions_map_onto_optuna_suggestions(tmp_path):
    config = {
        "method": "bayes",
        "metric": {"name": "eval/mean_return", "goal": "maximize"},
        "parameters": {
            "policy_lr": {"distribution": "log_uniform", "min": math.log(1e-4), "max": math.log(1e-2)},  # exponents
            "q_lr": {"distribution": "q_log_uniform_values", "min": 0.001, "max": 0.1, "q": 0.001},
            "batch_size": {"min": 16, "max": 64},  # inferred int_uniform
            "tau": {"min": 0.001, "max": 0.01},  # inferred uniform
            "gamma": {"distribution": "q_uniform", "min": 0.9, "max": 0.99, "q": 0.01},
            "autotune": {"values": [True, False]},
            "env_id": {"value": "Hopper-v5"},
        },
    }
    spec = load_spec(write(tmp_path, config), "sac")
    assert isinstance(make_sampler(spec, 0), optuna.samplers.TPESampler)
    assert spec.direction == "maximize"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        p = suggest(study.ask(), spec.params)
        assert 1e-4 <= p["policy_lr"] <= 1e-2
        assert 0.001 <= p["q_lr"] <= 0.1 and abs(p["q_lr"] / 0.001 - round(p["q_lr"] / 0.001)) < 1e-6
        assert isinstance(p["batch_size"], int) and 16 <= p["batch_size"] <= 64
        assert 0.001 <= p["tau"] <= 0.01 and 0.9 <= p["gamma"] <= 0.99
        assert p["env_id"] == "Hopper-v5"
        flags = to_flags(script_args_type("sac"), p)
        assert ("--autotune" if p["autotune"] else "--no-autotune") in flags
    grid = load_spec(write(tmp_path, {**SAC_SWEEP, "method": "grid",
                                      "parameters": {"alpha": {"values": [0.1, 0.3]}}}), "sac")  # fmt: skip
    assert isinstance(make_sampler(grid, 0), optuna.samplers.GridSampler)
    rand = load_spec(write(tmp_path, SAC_SWEEP), "sac")
    assert isinstance(make_sampler(rand, 0), optuna.samplers.RandomSampler)
    assert isinstance(make_pruner(rand, "median"), optuna.pruners.MedianPruner)
    hb = load_spec(write(tmp_path, {**SAC_SWEEP, "early_terminate": {"type": "hyperband", "min_iter": 2}}), "sac")
    assert isinstance(make_pruner(hb, "median"), optuna.pruners.HyperbandPruner)


def test_threads_per_worker_fit_the_cores():
    cores = len(os.sched_getaffinity(0))
    for workers, seeds in [(1, 2), (2, 2), (4, 3)]:
        threads = default_threads(workers, seeds)
        assert threads >= 1
        assert workers * seeds * threads <= max(cores, workers * seeds)


# ---- a real trial ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_trial_runs_every_seed_and_scores_the_logged_metric(tmp_path):
    """Two seeds of sac.py in parallel: the intermediate values are the per-step means over the seeds of what the
    runs logged under the YAML's metric, and the trial's value is the mean of their final values."""
    spec = load_spec(write(tmp_path, SAC_SWEEP), "sac", TINY_SAC)
    reports: list[tuple[int, float]] = []
    result = run_trial(spec, {"policy_lr": 3e-4, "alpha": 0.3}, (1, 2), tmp_path / "trial", 1,
                       lambda step, value: reports.append((step, value)))  # fmt: skip
    logged = {seed: read_scalars(Path(result["run_dirs"][str(seed)])) for seed in (1, 2)}
    for seed in (1, 2):
        assert set(EVAL_METRICS) <= set(logged[seed])  # what load_spec accepts is really logged
        args = json.loads((Path(result["run_dirs"][str(seed)]) / "args.json").read_text())
        assert args["seed"] == seed and args["policy_lr"] == 3e-4 and args["alpha"] == 0.3 and args["threads"] == 1
    curves = {seed: {s.step: s.value for s in logged[seed]["eval/mean_return"]} for seed in (1, 2)}
    assert [s for s, _ in reports] == [100, 200]
    for step, value in reports:
        assert value == pytest.approx(statistics.fmean(curves[seed][step] for seed in (1, 2)))
    assert result["value"] == pytest.approx(statistics.fmean(curves[seed][200] for seed in (1, 2)))
    assert result["per_seed"] == {str(s): pytest.approx(curves[s][200]) for s in (1, 2)}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wandb_trial_function_logs_the_objective_offline(tmp_path, monkeypatch):
    """The W&B backend up to the network boundary: the sweep config W&B would receive, and the agent's trial
    function run with a config in offline mode, logging the objective under the configured name."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    config_path = write(tmp_path, {**SAC_SWEEP, "name": "sac-offline"})
    spec = load_spec(config_path, "sac", TINY_SAC)
    sent = wandb_sweep_config(spec)
    assert sent["program"] == "framework/sac.py" and sent["metric"] == SAC_SWEEP["metric"]
    assert set(sent["parameters"]) == {"policy_lr", "alpha"}
    args = sweep.Args(config_filename=str(config_path), algorithm="sac", backend="wandb", runs_dir=str(tmp_path / "r"))
    trial = make_wandb_trial(spec, args, threads=1)
    value = trial({"policy_lr": 5e-4, "alpha": 0.1})
    (wandb_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    logged = logged_values(wandb_file.read_bytes(), b"eval/mean_return")
    assert value in logged  # the summary the sweep optimises (and the last per-step mean)
    assert logged_values(wandb_file.read_bytes(), b"policy_lr") == [5e-4]  # the trial's config
    assert logged_values(wandb_file.read_bytes(), b"alpha") == [0.1]
    run_dirs = sorted((tmp_path / "r").glob("run_*/seed_*/*/args.json"))
    assert [json.loads(p.read_text())["policy_lr"] for p in run_dirs] == [5e-4, 5e-4]
    finals = [read_scalars(p.parent)["eval/mean_return"][-1].value for p in run_dirs]
    assert value == pytest.approx(statistics.fmean(finals))


# ---- the whole command line: a study, its continuation, --best -------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 2 minutes on idle cores; many more on a loaded machine
def test_optuna_study_two_workers_continues_and_best_writes_a_script_that_runs(tmp_path):
    config = write(tmp_path, {**SAC_SWEEP, "name": "tiny-sac"})
    storage, runs, scripts = tmp_path / "optuna.log", tmp_path / "runs", tmp_path / "scripts"
    base = [sys.executable, str(REPO / "framework" / "sweep.py"), "--backend", "optuna", "--algorithm", "sac",
            "--config-filename", str(config), "--storage", str(storage), "--runs-dir", str(runs)]  # fmt: skip

    def call(*flags: str) -> subprocess.CompletedProcess:
        out = subprocess.run([*base, *flags, "--", *TINY_SAC], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        return out

    call("--sweep-count", "2", "--workers", "2")
    study = optuna.load_study(study_name="tiny-sac", storage=make_storage(str(storage)))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) == 2
    for t in study.trials:
        finals = [read_scalars(Path(d))["eval/mean_return"][-1].value for d in t.user_attrs["run_dirs"].values()]
        assert t.value == pytest.approx(statistics.fmean(finals))
        assert sorted(t.intermediate_values) == [100, 200]
    call("--sweep-count", "1", "--pruner", "none")  # the second call continues the same study (run to the end)
    study = optuna.load_study(study_name="tiny-sac", storage=make_storage(str(storage)))
    assert len(study.trials) == 3 and study.trials[2].state.name == "COMPLETE"

    out = call("--best", "--held-out-seeds", "7", "8", "--scripts-dir", str(scripts))
    script = scripts / "synthetic_sac_InvertedPendulum_v5.sh"
    result = json.loads((scripts / "studies" / "tiny-sac.json").read_text())
    assert result["best"]["number"] == study.best_trial.number and len(result["trials"]) == 3
    assert sorted(result["held_out"]["per_seed"]) == ["7", "8"]
    assert f"{result['held_out']['mean']:.2f}" in out.stdout and "held-out seeds [7, 8]" in out.stdout
    text = script.read_text()
    assert "local Optuna study of ours, study 'tiny-sac'" in text and "held-out seeds [7, 8]" in text
    for name, value in study.best_params.items():
        assert f"--{name.replace('_', '-')} {value}" in text
    # the script runs from its place in the repository's scripts/ (it changes to the directory above its own);
    # a name that no `scripts/*.sh` glob matches, removed afterwards
    placed = REPO / "scripts" / f".test_{tmp_path.name}.sh.tmp"
    placed.write_text(text)
    try:
        run = subprocess.run(["bash", str(placed), "--runs-dir", str(tmp_path / "best"), "--no-progress-bar",
                              "--total-timesteps", "150"], capture_output=True, text=True, timeout=600)  # fmt: skip
    finally:
        placed.unlink()
    assert run.returncode == 0, run.stderr
    (run_dir,) = (tmp_path / "best").iterdir()
    assert json.loads((run_dir / "args.json").read_text())["policy_lr"] == study.best_params["policy_lr"]
    assert read_scalars(run_dir)["eval/mean_return"][-1].step == 150


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_trial_worse_than_the_median_is_pruned_and_its_runs_stopped(tmp_path):
    """A finished trial with an unreachable return at every evaluation step makes MedianPruner prune the next
    trial at its first reported evaluation; its runs are stopped (SIGTERM) before their last step."""
    long_sac = [*TINY_SAC, "--total-timesteps", "3000", "--evaluation-frequency", "100"]
    spec = load_spec(write(tmp_path, {**SAC_SWEEP, "name": "prune"}), "sac", long_sac)
    args = sweep.Args(config_filename="x", algorithm="sac", storage=str(tmp_path / "s.log"), runs_dir=str(tmp_path))
    study = open_study(spec, args, "prune")
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    dist = {"policy_lr": optuna.distributions.FloatDistribution(1e-4, 1e-3, log=True),
            "alpha": optuna.distributions.CategoricalDistribution([0.1, 0.3])}  # fmt: skip
    study.add_trial(optuna.trial.create_trial(params={"policy_lr": 3e-4, "alpha": 0.1}, distributions=dist,
                                              value=1e9, intermediate_values={s: 1e9 for s in range(100, 3001, 100)}))  # fmt: skip
    study.optimize(make_objective(spec, args, "prune", threads=1), n_trials=1)
    trial = study.trials[-1]
    assert trial.state.name == "PRUNED"
    last = max(trial.intermediate_values)
    assert last < 3000
    for seed in (1, 2):
        (run_dir,) = (tmp_path / "trial_0001" / f"seed_{seed}").iterdir()
        assert read_scalars(run_dir)["eval/mean_return"][-1].step < 3000


@pytest.mark.parametrize("storage_name", ["study.log", "study.db"])
def test_storage_is_readable_by_optuna_dashboard(tmp_path, storage_name):
    """The study files sweep.py writes (journal file or SQLite) open in optuna-dashboard (its WSGI app, called
    directly: GET /api/studies)."""
    import io

    from optuna_dashboard import wsgi

    spec = load_spec(write(tmp_path, SAC_SWEEP), "sac", TINY_SAC)
    args = sweep.Args(config_filename="x", algorithm="sac", storage=str(tmp_path / storage_name))
    study = open_study(spec, args, "dash")
    trial = study.ask()
    suggest(trial, spec.params)
    trial.report(12.5, 100)
    study.tell(trial, 20.0)
    app = wsgi(make_storage(str(tmp_path / storage_name)))
    status: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/studies", "QUERY_STRING": "", "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http"}  # fmt: skip
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200")
    (summary,) = json.loads(body)["study_summaries"]
    assert summary["study_name"] == "dash" and summary["directions"] == ["maximize"]
    assert sorted(u["key"] for u in summary["user_attrs"]) == sorted(study_attrs(spec, args.seeds))
