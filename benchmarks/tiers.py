"""The benchmark campaign's grids: named tiers of env × method × label budget × seed (benchmarks/suite.py runs
them). Every cell is one ordinary run of ``framework/sac_rlhf.py`` (PEBBLE with the oracle teacher) or
``framework/sac.py`` (SAC on the true reward, the oracle), with the flags listed here and the scripts' defaults
otherwise. Seeds are fixed lists, chosen before any result was seen and never changed by results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SEEDS_5 = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Task:
    """One environment's budget in a tier; ``pebble`` holds the flags that only the PEBBLE run gets."""

    env_id: str
    steps: int
    eval_every: int
    common: tuple[str, ...] = ()
    pebble: tuple[str, ...] = ()
    checkpoint_every: int = 0  # periodic resumable checkpoints (0: the script's default), for scripts with --resume


@dataclass(frozen=True)
class Tier:
    name: str
    tasks: tuple[Task, ...]
    label_budgets: dict[str, tuple[int, ...]]  # env id -> PEBBLE label budgets
    seeds: tuple[int, ...]
    queries_per_session: dict[int, int] = field(default_factory=dict)  # label budget -> queries per session
    runnable_on_cpu: bool = True
    description: str = ""


# quick: small tasks that SAC solves in tens of thousands of steps; 100 labels in 10 sessions of 10 (PEBBLE's
# walker-walk budget), segments of 50 steps (B-Pref, PEBBLE) or half an episode where episodes are shorter.
_QUICK_COMMON = ("--learning-starts", "1000", "--evaluation-episodes", "10")
_QUICK_PEBBLE = ("--total-explore-steps", "2000")
QUICK = Tier(
    name="quick",
    tasks=(
        Task("InvertedPendulum-v5", 20_000, 2_000, _QUICK_COMMON, (*_QUICK_PEBBLE, "--trajectory-length", "50"), 5_000),
        Task(
            "InvertedDoublePendulum-v5",
            25_000,
            2_500,
            _QUICK_COMMON,
            (*_QUICK_PEBBLE, "--trajectory-length", "50"),
            5_000,
        ),
        # Reacher's episodes are 50 steps long
        Task("Reacher-v5", 20_000, 2_000, _QUICK_COMMON, (*_QUICK_PEBBLE, "--trajectory-length", "25"), 5_000),
        # 1000-step episodes: fewer evaluation episodes keep evaluation a small share of the run
        Task(
            "dm_control/cartpole-swingup-v0",
            40_000,
            4_000,
            ("--learning-starts", "1000", "--evaluation-episodes", "5"),
            (*_QUICK_PEBBLE, "--trajectory-length", "50"),
            checkpoint_every=5_000,
        ),
    ),
    label_budgets={},
    seeds=SEEDS_5,
    queries_per_session={100: 10},
    description="PEBBLE with 100 oracle labels against SAC on the true reward; minutes per run on a CPU",
)
for _t in QUICK.tasks:
    QUICK.label_budgets[_t.env_id] = (100,)

# medium: the locomotion tasks the papers use, at 200 k steps (a fifth of the MuJoCo protocol, 2/5 of walker-walk's)
MEDIUM = Tier(
    name="medium",
    tasks=(
        Task("Hopper-v5", 200_000, 10_000, checkpoint_every=20_000),
        Task("Walker2d-v5", 200_000, 10_000, checkpoint_every=20_000),
        Task("HalfCheetah-v5", 200_000, 10_000, checkpoint_every=20_000),
        Task("dm_control/walker-walk-v0", 200_000, 10_000, (), ("--trajectory-length", "50"), 20_000),
    ),
    label_budgets={
        "Hopper-v5": (500,),
        "Walker2d-v5": (500,),
        "HalfCheetah-v5": (500,),
        "dm_control/walker-walk-v0": (100,),  # the budget SURF, QPA and later work use
    },
    seeds=(1, 2, 3),
    queries_per_session={500: 20, 100: 10},
    description="locomotion at 200 k steps: 500 labels on MuJoCo, 100 on walker-walk; tens of minutes per run",
)

# standard: the B-Pref / OnlinePbRL protocol (anchors: shared notes §1.2); defined for a GPU or a cluster
STANDARD = Tier(
    name="standard",
    tasks=(
        Task("dm_control/walker-walk-v0", 500_000, 10_000, ("--trajectory-length", "50")),
        Task("dm_control/cheetah-run-v0", 1_000_000, 10_000, ("--trajectory-length", "50")),
        Task("dm_control/quadruped-walk-v0", 1_000_000, 10_000, ("--trajectory-length", "50")),
        *(
            Task(env, 1_000_000, 10_000, ("--trajectory-length", "50"))
            for env in ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5")
        ),
    ),
    label_budgets={
        "dm_control/walker-walk-v0": (100, 500),
        "dm_control/cheetah-run-v0": (100,),
        "dm_control/quadruped-walk-v0": (1000,),
        "Hopper-v5": (1000,),
        "Walker2d-v5": (1000,),
        "HalfCheetah-v5": (1000,),
        "Ant-v5": (1000,),
    },
    seeds=SEEDS_5,
    queries_per_session={100: 10, 500: 50, 1000: 100},
    runnable_on_cpu=False,
    description="the B-Pref / OnlinePbRL protocol: 500 k to 1 M steps; not run on the 2-core CPU",
)

TIERS = {t.name: t for t in (QUICK, MEDIUM, STANDARD)}
SCRIPTS = {"pebble": "sac_rlhf.py", "sac": "sac.py"}


@dataclass(frozen=True)
class Cell:
    tier: str
    env_id: str
    method: str  # "pebble" or "sac" (the oracle: SAC on the true reward)
    labels: int  # label budget (0 for the oracle)
    seed: int
    steps: int
    flags: tuple[str, ...]
    checkpoint_every: int = 0

    @property
    def name(self) -> str:
        env = self.env_id.replace("/", "-")
        method = f"pebble{self.labels}" if self.method == "pebble" else self.method
        return f"{env}__{method}__seed{self.seed}"

    @property
    def script(self) -> str:
        return SCRIPTS[self.method]


def cells(tier: Tier) -> list[Cell]:
    """The tier's grid, seed-major so that an interrupted campaign has whole seeds done first."""
    out = []
    for seed in tier.seeds:
        for task in tier.tasks:
            base = (
                "--env-id", task.env_id, "--seed", str(seed), "--total-timesteps", str(task.steps),
                "--evaluation-frequency", str(task.eval_every), *task.common,
            )  # fmt: skip
            out.append(Cell(tier.name, task.env_id, "sac", 0, seed, task.steps, base, task.checkpoint_every))
            for labels in tier.label_budgets[task.env_id]:
                per_session = tier.queries_per_session.get(labels, 10)
                feedback = (
                    "--teacher-feedback-total-queries", str(labels),
                    "--teacher-feedback-num-queries-per-session", str(per_session),
                )  # fmt: skip
                flags = (*base, *task.pebble, *feedback)
                out.append(
                    Cell(tier.name, task.env_id, "pebble", labels, seed, task.steps, flags, task.checkpoint_every)
                )
    return out
