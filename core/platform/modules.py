"""Two ways for a process to leave code out of its memory: a package hidden while a library is
imported, and a module deferred until it is used. Used by core/platform/lean_imports.py and
workers/master.py; measured in docs/performance.md#memory.

Imports nothing but the standard library's import machinery, so a process can use it before
anything else.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any


@contextmanager
def hidden(*names: str) -> Iterator[None]:
    """Inside the block, ``import name`` raises ImportError, as if the package were not installed.
    A name already imported is left alone. Afterwards the names import normally again."""
    hide = [name for name in names if name not in sys.modules]
    for name in hide:
        sys.modules[name] = None  # type: ignore[assignment]  # import's own "not importable" marker
    try:
        yield
    finally:
        for name in hide:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


def deferred(*names: str) -> None:
    """Each module named is imported as usual, but its code runs at the first access to one of its
    attributes that is not there yet, not at its import.

    For a module a library imports at the top and uses only in calls this process never makes: redis
    imports its asyncio client in ``import redis``, SQLAlchemy's PostgreSQL dialect package the
    dialects of every driver. ``import name`` and ``from package import name`` bind the module
    without running it (and a submodule's import runs only the submodule); ``name.attribute``,
    ``from name import attribute`` and ``hasattr(name, ...)`` run it first, once, under a lock. It is
    the same module object before and after. A name already imported is left alone; a name that
    cannot be found is skipped (the library's own import reports it, as it would have).
    """
    for name in names:
        if name in sys.modules:
            continue
        spec = _find_without_importing(name)
        if spec is None or spec.loader is None:
            continue
        sys.modules[name] = _DeferredModule.create(spec)


def is_deferred(name: str) -> bool:
    """Whether ``name`` is a deferred module whose code has not run yet."""
    hook = vars(sys.modules[name]).get("__getattr__") if sys.modules.get(name) is not None else None
    return isinstance(hook, _DeferredModule) and not hook.ran


def _find_without_importing(name: str) -> importlib.machinery.ModuleSpec | None:
    """The spec of ``name`` found on sys.path, level by level, without importing its parent packages
    (``importlib.util.find_spec`` would run them)."""
    path: list[str] | None = None
    spec = None
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), path)
        if spec is None:
            return None
        if depth < len(parts):
            if spec.submodule_search_locations is None:
                return None
            path = list(spec.submodule_search_locations)
    return spec


class _DeferredModule:
    """The ``__getattr__`` (PEP 562) of a deferred module: runs the module's code at the first access
    to a missing attribute, then answers from the module as it now is. Another thread asking while
    the code runs waits for it to finish."""

    def __init__(self, module: ModuleType, spec: importlib.machinery.ModuleSpec) -> None:
        self.module = module
        self.spec = spec
        self.lock = threading.RLock()
        self.ran = False

    @classmethod
    def create(cls, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.util.module_from_spec(spec)
        module.__getattr__ = cls(module, spec)  # type: ignore[method-assign]
        return module

    def __call__(self, attribute: str) -> Any:
        module = self.module
        namespace = vars(module)
        with self.lock:
            if not self.ran:
                self.ran = True  # set first: the module's own code may ask for a name it defines later
                try:
                    self.spec.loader.exec_module(module)  # type: ignore[union-attr]
                except BaseException:
                    # As a failed import does: the module is gone, the next import tries again.
                    if sys.modules.get(self.spec.name) is module:
                        del sys.modules[self.spec.name]
                    raise
                finally:
                    if namespace.get("__getattr__") is self:  # the module may define its own
                        del namespace["__getattr__"]
        if attribute in namespace:
            return namespace[attribute]
        own = namespace.get("__getattr__")
        if own is not None and own is not self:
            return own(attribute)
        raise AttributeError(f"module {module.__name__!r} has no attribute {attribute!r}")
