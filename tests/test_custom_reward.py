"""The behaviour teacher (--teacher-sim-reward, rlhf.custom_reward; issue 12 item 5): the simulated teacher's labels
follow the user's criterion, not the environment's reward; a criterion that cannot be found or answers in the
wrong shape is a one-line error with exit status 2. (A whole run with a criterion: tests/test_pref_dataset.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from script_runs import argv
from test_pref_dataset import segments
from test_pref_ppo_labels import TINY_PREF_PPO

from rlhf.custom_reward import CustomReward, load_reward_function
from rlhf.feedback import SimulatedAnswers
from rlhf.teacher import SimulatedTeacher

CRITERIA = """
import numpy as np

def first_coordinate(t):
    return 2.0 * t.obs[..., 0]

def moves_forward(t):  # a function of observations and next observations
    return t.next_obs[..., 0] - t.obs[..., 0]

def one_number_per_segment(t):
    return t.obs[..., 0].sum(axis=1)

def first_action_near_half(t):  # best at a constant action whose first coordinate is 0.5
    return -((t.actions[..., 0] - 0.5) ** 2)
"""


@pytest.fixture
def criteria(tmp_path) -> Path:
    path = tmp_path / "criteria.py"
    path.write_text(CRITERIA)
    return path


def test_the_teachers_labels_follow_the_criterion_not_the_true_reward(criteria, rng):
    seg_a, seg_b = segments(rng, 64), segments(rng, 64)
    seg_a.obs[0, 4:, 0] = 1e3  # padding after a termination: it must count zero, as the true reward's does
    seg_b.true_rewards = seg_a.true_rewards - 1.0  # by the environment's reward, A is always better
    teacher = SimulatedAnswers(SimulatedTeacher(rng), "simulated:x", CustomReward(f"{criteria}:first_coordinate", "-"))
    teacher.submit(seg_a, seg_b, session=0)
    (answers,) = teacher.collect(wait=False)
    returns = [(2.0 * s.obs[..., 0] * s.mask).sum(1) for s in (seg_a, seg_b)]
    np.testing.assert_array_equal(answers.labels, (returns[1] > returns[0]).astype(np.float32))
    assert 0.2 < answers.labels.mean() < 0.8  # so not the true reward's labels (all 0)
    assert answers.labellers == ["simulated:x"] * 64

    forward = CustomReward(f"{criteria}:moves_forward", "-")(seg_a)
    np.testing.assert_allclose(forward, np.where(seg_a.mask, seg_a.next_obs[..., 0] - seg_a.obs[..., 0], 0), rtol=1e-6)


def test_geom_positions_are_the_stored_states_forward_kinematics(criteria):
    """Ant's feet heights, as examples/ant_raise_leg.py reads them, equal MuJoCo's own for each stored state."""
    import mujoco

    from rlhf.envs import get_physics_state, make_env, mujoco_handles

    reward = CustomReward(str(Path(__file__).parents[1] / "examples" / "ant_raise_leg.py") + ":raised_leg", "Ant-v5")
    env = make_env("Ant-v5", seed=3)
    env.reset(seed=3)
    model, data = mujoco_handles(env)
    states, expected = [], []
    for _ in range(5):
        env.step(env.action_space.sample())
        states.append(get_physics_state(env))
        mujoco.mj_forward(model, data)  # after a step, MuJoCo's positions are still those of the previous state
        z = [data.geom_xpos[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, f"{g}_ankle_geom")][2]
             for g in ("left", "right", "third", "fourth")]  # fmt: skip
        expected.append(1.0 + z[0] - max(z[1:]))  # ALIVE + the lift
    env.close()
    seg = segments(np.random.default_rng(0), 1, H=5, obs_dim=105, act_dim=8, state_dim=len(states[0]))
    seg.mask[:] = True
    seg.physics_states = np.asarray(states, np.float32)[None]
    np.testing.assert_allclose(reward(seg)[0], expected, atol=1e-4)
    reward.close()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_anywhere:f", "cannot import 'no_such_module_anywhere'"),
        ("{criteria}:missing", "has no function 'missing'"),
        ("{criteria}", "must be module:function"),
        ("{criteria}:one_number_per_segment", "returned shape (1,), expected (N, H) = (1, 16)"),
    ],
)
def test_a_bad_criterion_is_one_line_and_exit_2(tmp_path, criteria, capsys, spec, message):
    import pref_ppo

    code = pref_ppo.cli(argv(TINY_PREF_PPO, tmp_path / "runs", "--teacher-sim-reward", spec.format(criteria=criteria)))
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run directory left


def test_the_examples_constant_action_search_finds_a_known_optimum(criteria):
    """examples/ant_raise_leg.py's cross-entropy search, on a criterion whose best constant action is known (first
    coordinate 0.5, the others free), finds it; its episode score is the criterion's sum over the steps."""
    example = Path(__file__).parents[1] / "examples" / "ant_raise_leg.py"
    best_constant_action = load_reward_function(f"{example}:best_constant_action")
    episode_score = load_reward_function(f"{example}:episode_score")
    from rlhf.envs import make_env

    env = make_env("Ant-v5", seed=0)
    reward = CustomReward(f"{criteria}:first_action_near_half", "Ant-v5")
    action = best_constant_action(env, reward, iterations=5, population=20, elite=5, horizon=5)
    assert abs(action[0] - 0.5) < 0.1, action
    held = np.full(env.action_space.shape, 0.9, np.float32)
    assert episode_score(env, reward, lambda _obs: held, seed=0, max_steps=10) == pytest.approx(-1.6)
    env.close()
    reward.close()


def test_reward_model_pearson_compares_with_the_criterion_the_teacher_judges_by(criteria, rng):
    """With a behaviour teacher, ``reward_model/pearson`` is r̂'s correlation with the criterion over the newest
    transitions, not with the environment's reward (here its negative, so the two have opposite signs: checked,
    the old metric read -0.86 for this learned reward)."""
    import torch

    from rlhf.feedback import pearson
    from rlhf.feedback_loop import FeedbackLoop, SessionConfig
    from rlhf.preferences import PreferenceDataset
    from rlhf.reward_model import RewardEnsemble, predict_rewards
    from rlhf.reward_training import RewardTrainingConfig

    def with_true_reward_against_the_criterion(seg):
        seg.true_rewards = np.where(seg.mask, -2.0 * seg.obs[..., 0], 0).astype(np.float32)
        return seg

    class Data:
        newest_seen = None

        def select(self, n, candidates, length, strategy, rng_):
            return (with_true_reward_against_the_criterion(segments(rng, n)),
                    with_true_reward_against_the_criterion(segments(rng, n)))  # fmt: skip

        def newest(self, n):
            self.newest_seen = with_true_reward_against_the_criterion(segments(rng, 8, H=50))
            self.newest_seen.mask[:] = True
            return self.newest_seen

        def reward_updated(self, updates):
            pass

    criterion = CustomReward(f"{criteria}:first_coordinate", "-")
    teacher = SimulatedAnswers(SimulatedTeacher(rng), "simulated:x", criterion)
    assert teacher.criterion is criterion
    cfg = SessionConfig(128, 1, 6, "uniform", 0.0, None, RewardTrainingConfig(epochs=30), wait=False, timeout=0.0)
    ensemble = RewardEnsemble(3, 2, members=1, hidden_dim=16, hidden_layers=1)
    logged: list[dict] = []
    data = Data()
    loop = FeedbackLoop(cfg, np.array([0]), teacher, ensemble, torch.optim.Adam(ensemble.parameters(), lr=1e-2),
                        PreferenceDataset(6, 3, 2, 5), data, rng, log_scalars=lambda m, s: logged.append(m))  # fmt: skip
    assert loop.step(0)
    seen = data.newest_seen
    mean, _ = predict_rewards(ensemble, seen.obs.reshape(-1, 3), seen.actions.reshape(-1, 2))
    assert logged[-1]["reward_model/pearson"] == pytest.approx(pearson(mean, 2.0 * seen.obs[..., 0].reshape(-1)))
    assert logged[-1]["reward_model/pearson"] > 0.8 and pearson(mean, seen.true_rewards.reshape(-1)) < -0.8
