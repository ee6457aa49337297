"""The project as an installed package (issue 8 item 7): every folder's modules import by name from anywhere, with no
sys.path edits in the code; the names it puts on sys.path shadow nothing else; pre-commit runs the locked ruff."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own TOML reader
    import tomli as tomllib

from conftest import REPO_ROOT

# sys.path.insert / .append / .extend / slice assignment, site.addsitedir: what an installed package makes unneeded
PATH_EDIT = re.compile(r"sys\.path\s*(\.\s*(insert|append|extend)\s*\(|\[[^\]]*\]\s*=|[+]=)|site\.addsitedir\s*\(")


def tracked_python_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return [REPO_ROOT / line for line in out.stdout.splitlines() if (REPO_ROOT / line).is_file()]


# the folders the editable install puts on sys.path (pyproject [tool.poetry] packages)
ROOTS = ("framework", "humanFeedback", "toolbox", "benchmarks")


def import_roots() -> dict[str, list[str]]:
    """folder -> the module names it provides: its packages and modules (rlhf, sac_rlhf, store, suite, ...)."""
    return {
        folder: sorted(
            p.stem if p.suffix == ".py" else p.name
            for p in (REPO_ROOT / folder).iterdir()
            if p.suffix == ".py" or (p / "__init__.py").is_file()
        )
        for folder in ROOTS
    }


def test_no_sys_path_edits_in_the_code():
    """Checked to fail: with `sys.path.insert(0, "x")` added to tests/toy_env.py it names that file."""
    assert PATH_EDIT.search("sys.path.insert(0, str(FRAMEWORK))") and PATH_EDIT.search("sys.path[:0] = [p]")
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{n}"
        for path in tracked_python_files()
        if path.name != "test_tooling.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PATH_EDIT.search(line)
    ]
    assert offenders == [], "the project is installed (pyproject [tool.poetry] packages): import by name instead"


def test_every_folder_imports_by_name_from_anywhere(tmp_path):
    """A fresh interpreter in an unrelated directory, no PYTHONPATH: each root's modules resolve to the checkout
    (the editable install of `uv sync` / `poetry install`). Checked to fail with the humanFeedback entry removed
    from pyproject's packages (after `uv sync`)."""
    roots = import_roots()
    assert "rlhf" in roots["framework"] and "feedback_server" in roots["humanFeedback"]
    names = [name for modules in roots.values() for name in modules]
    code = (
        "import importlib.util, json, sys\n"
        f"print(json.dumps({{n: getattr(importlib.util.find_spec(n), 'origin', None) for n in {names!r}}}))"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    origins = json.loads(out.stdout)
    for folder, modules in roots.items():
        for name in modules:
            assert origins[name] is not None, f"{name} ({folder}/) is not importable: run `uv sync`"
            assert Path(origins[name]).resolve().is_relative_to(REPO_ROOT / folder), (name, origins[name])


def test_import_roots_shadow_nothing():
    """The flat module names the roots provide are unique, and no standard-library module or other installed
    distribution uses them (a `benchmarks/profile.py` would hide the stdlib's profile from every script there)."""
    names = [name for modules in import_roots().values() for name in modules]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert set(names).isdisjoint(sys.stdlib_module_names), set(names) & set(sys.stdlib_module_names)
    others = {
        name: dists
        for name, dists in importlib.metadata.packages_distributions().items()
        if name in names and set(dists) != {"cleanrlhf"}
    }
    assert others == {}


def test_pre_commit_runs_the_locked_ruff():
    """.pre-commit-config.yaml's ruff hook is the ruff of uv.lock, so a commit hook and `uv run ruff` (CI) agree."""
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    (hook,) = [r for r in config["repos"] if r["repo"].endswith("/ruff-pre-commit")]
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    (ruff,) = [p["version"] for p in lock["package"] if p["name"] == "ruff"]
    assert hook["rev"] == f"v{ruff}"
