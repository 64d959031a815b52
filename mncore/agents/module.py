"""``module``: delegates to a user's Python class loaded from the bundle or an import path (§11.4).

``config.module`` names the class (``pkg.mod.ClassName`` or ``pkg.mod:ClassName``);
``config.module_source`` optionally names a ``.py`` file under ``payloads/`` that is imported
first, with its directory first on the import path. Module code runs inside the runtime: trusted
code only.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect as pyinspect
import sys
import threading
from pathlib import Path
from typing import Any

from .._util import inspect
from ..errors import ValidationError
from ..message import Message
from .base import Agent, AgentFailure, HandleResult

__all__ = ["ModuleAgent", "load_delegate"]

_import_lock = threading.Lock()


def load_delegate(config: dict[str, Any]) -> tuple[str, Any]:
    """Resolve ``config.module`` (after importing ``module_source``) to a delegate instance."""
    name = config.get("module")
    if name is None or name == "":
        raise ValidationError("module agent requires config.module")
    if not isinstance(name, str) or not name.replace(":", ".").replace("_", "a").replace(".", "a").isalnum():
        raise ValidationError(f"invalid module agent {inspect(name)}")
    source = config.get("module_source")
    if source:
        _import_source(source, config.get("__payloads_path"))
    modpath, sep, attr = name.partition(":")
    if not sep:
        modpath, _, attr = name.rpartition(".")
    if not modpath or not attr:
        raise ValidationError(f"invalid module agent {inspect(name)}")
    try:
        with _import_lock:
            module = importlib.import_module(modpath)
        target = getattr(module, attr)
    except (ImportError, AttributeError):
        raise ValidationError(f"module agent {name} is not available") from None
    delegate = target() if isinstance(target, type) else target
    if not callable(getattr(delegate, "handle_message", None)):
        raise ValidationError(f"module agent {name} is not available")
    return name, delegate


def _import_source(source: str, payloads_path: str | None) -> None:
    if not payloads_path:
        raise ValidationError("module_source requires payloads path in runtime context")
    path = (Path(payloads_path) / source).resolve()
    if not path.is_file():
        raise ValidationError(f"module source does not exist: {path}")
    folder = str(path.parent)
    with _import_lock:
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ValidationError(f"module source does not exist: {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # fresh per job: a changed bundle file is picked up
        spec.loader.exec_module(module)


def _normalise_result(result: Any, previous: Any) -> tuple[Any, list[tuple[Any, ...]]]:
    if isinstance(result, tuple) and len(result) == 3 and result[0] == "error":
        raise AgentFailure(result[1])
    if isinstance(result, tuple) and len(result) == 2 and result[0] == "ok" and not isinstance(result[1], list):
        return result[1], []
    if isinstance(result, (tuple, list)) and len(result) == 2:
        state, actions = result
        return state, [tuple(a) for a in (actions or [])]
    if result is None:
        return previous, []
    raise AgentFailure(f"handle_message must return (state, actions), got {type(result).__name__}")


class ModuleAgent(Agent):
    """Wraps a delegate; agent state is ``{delegate, delegate_state, config}``."""

    def setup(self, node: dict[str, Any]) -> None:
        self.config: dict[str, Any] = node.get("config") or {}
        self.name, self.delegate = load_delegate(self.config)

    def init(self, node: dict[str, Any]) -> Any:
        init = getattr(self.delegate, "init", None)
        delegate_state = init(node) if callable(init) else {}
        return {"delegate": self.name, "delegate_state": delegate_state, "config": self.config}

    def handle_message(self, message: Message, state: Any, context: dict[str, Any]) -> Any:
        result = self.delegate.handle_message(message, state["delegate_state"], context)
        if pyinspect.isawaitable(result):
            return self._finish_async(result, state)
        state["delegate_state"], actions = _normalise_result(result, state["delegate_state"])
        return state, actions

    async def _finish_async(self, pending: Any, state: Any) -> HandleResult:
        result = await pending
        state["delegate_state"], actions = _normalise_result(result, state["delegate_state"])
        return state, actions

    def recover(self, state: Any, context: dict[str, Any]) -> HandleResult:
        recover = getattr(self.delegate, "recover", None)
        if not callable(recover):
            return state, []
        state["delegate_state"], actions = _normalise_result(
            recover(state["delegate_state"], context), state["delegate_state"]
        )
        return state, actions

    def snapshot_state(self, state: Any) -> Any:
        snap = getattr(self.delegate, "snapshot_state", None)
        inner = snap(state["delegate_state"]) if callable(snap) else state["delegate_state"]
        return {"delegate": state["delegate"], "delegate_state": inner, "config": _public(state["config"])}

    def restore_state(self, data: Any) -> Any:
        data = data if isinstance(data, dict) else {}
        restore = getattr(self.delegate, "restore_state", None)
        inner = data.get("delegate_state")
        return {
            "delegate": data.get("delegate", self.name),
            "delegate_state": restore(inner) if callable(restore) else inner,
            "config": self.config,
        }

    def inspect_state(self, state: Any) -> Any:
        view = getattr(self.delegate, "inspect_state", None)
        inner = view(state["delegate_state"]) if callable(view) else state["delegate_state"]
        return {"delegate": state["delegate"], "delegate_state": inner, "config": _public(state["config"])}


def _public(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not k.startswith("__")}
