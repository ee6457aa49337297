"""The checkpoint registry: a run's components register once by name, and both saving and restoring come from that
one list, so a component cannot be saved and then forgotten on resume (or the other way round).

A component is anything with ``state_dict()`` and ``load_state_dict(state)`` (modules, optimizers, buffers, the
feedback loop); :class:`Stateful` adapts a pair of functions. The resumable checkpoint is a bundle
(:func:`rlhf.checkpoint.save_bundle`): ``state`` (the header — format, algorithm, environment, step, component
names — and every small component) plus one part per large component (``large=True``: replay buffers), written as
one unit. The light ``final`` checkpoint, read by evaluation.py and the toolbox, holds the header, the run's flags
and the small components.

Loading validates the header field by field and turns any component that does not fit into a
:class:`rlhf.checkpoint.CheckpointError` naming the file (issue 9, item 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rlhf.checkpoint import CheckpointError, load_bundle, save_bundle, save_state

HEADER = ("format", "algorithm", "env_id", "step", "components")
RESUME_FORMAT = "cleanrlhf-resume-1"


class Component(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


class Stateful:
    """A component from two functions, for state that is not one object (e.g. a model's optimizers)."""

    def __init__(self, get: Callable[[], Any], set: Callable[[Any], None]):
        self.state_dict, self.load_state_dict = get, set


class CheckpointRegistry:
    def __init__(self, algorithm: str, env_id: str):
        self.algorithm, self.env_id = algorithm, env_id
        self.components: dict[str, tuple[Component, bool]] = {}  # name -> (component, large)

    def register(self, name: str, component: Component, large: bool = False) -> None:
        if name in self.components or name in HEADER or name == "args":
            raise ValueError(f"checkpoint component {name!r} is registered twice or shadows a header field")
        self.components[name] = (component, large)

    def _small(self) -> dict[str, Any]:
        return {name: c.state_dict() for name, (c, large) in self.components.items() if not large}

    def header(self, step: int) -> dict[str, Any]:
        return {"format": RESUME_FORMAT, "algorithm": self.algorithm, "env_id": self.env_id, "step": int(step),
                "components": sorted(self.components)}  # fmt: skip

    def save_resume(self, directory: Path, step: int) -> None:
        parts = {"state": {**self.header(step), **self._small()}}
        parts |= {name: c.state_dict() for name, (c, large) in self.components.items() if large}
        save_bundle(directory, parts)

    def save_final(self, path: Path, step: int, args: dict[str, Any]) -> None:
        save_state(path, {**self.header(step), "args": args, **self._small()})

    def restore(self, directory: Path, max_step: int) -> int:
        """Load the bundle at ``directory`` into the registered components; return its step."""
        large = tuple(name for name, (_, is_large) in self.components.items() if is_large)
        bundle = load_bundle(directory, ("state", *large))
        where = Path(directory) / "state.json"
        state = bundle["state"]
        step = self.check_header(state, where, max_step)
        for name, (component, is_large) in self.components.items():
            part = bundle[name] if is_large else state[name]
            try:
                component.load_state_dict(part)
            except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
                file = Path(directory) / f"{name}.json" if is_large else where
                raise CheckpointError(f"checkpoint file {file}: {name!r} does not fit this run ({e})") from e
        return step

    def check_header(self, state: Any, where: Path, max_step: int) -> int:
        """Every header field of a loaded ``state`` checked for type and value; returns the step."""
        if not isinstance(state, dict):
            raise CheckpointError(f"checkpoint file {where}: not a checkpoint state")
        missing = [k for k in HEADER if k not in state]
        if missing:
            raise CheckpointError(f"checkpoint file {where}: missing {', '.join(missing)}")
        expected = {"format": RESUME_FORMAT, "algorithm": self.algorithm, "env_id": self.env_id}
        for key, value in expected.items():
            if state[key] != value:
                raise CheckpointError(f"checkpoint file {where}: {key} is {state[key]!r}, this run needs {value!r}")
        step = state["step"]
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= max_step:
            raise CheckpointError(f"checkpoint file {where}: step must be an integer in [0, {max_step}], got {step!r}")
        if state["components"] != sorted(self.components):
            raise CheckpointError(
                f"checkpoint file {where}: holds components {state['components']!r}, this run has "
                f"{sorted(self.components)!r}"
            )
        for name, (_, is_large) in self.components.items():
            if not is_large and name not in state:
                raise CheckpointError(f"checkpoint file {where}: missing component {name!r}")
        return step


def expect(state: Any, key: str, kind: type | tuple[type, ...], minimum: float | None = None) -> Any:
    """``state[key]`` if it has type ``kind`` (bool is not an int) and is >= ``minimum``; else a ValueError that
    :meth:`CheckpointRegistry.restore` reports with the file's name."""
    if not isinstance(state, dict) or key not in state:
        raise ValueError(f"missing field {key!r}")
    value = state[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise ValueError(f"field {key!r} must be {'/'.join(k.__name__ for k in kinds)}, got {value!r}")
    if minimum is not None and not (isinstance(value, (int, float)) and not math.isnan(value) and value >= minimum):
        raise ValueError(f"field {key!r} must be >= {minimum}, got {value!r}")
    return value
