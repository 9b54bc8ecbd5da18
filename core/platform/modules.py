"""Three ways for a process to leave code out of its memory: a package hidden while a library is
imported, a module deferred until it is used, and functions loaded without their docstrings. Used
by core/platform/lean_imports.py and workers/master.py; measured in docs/performance.md#memory.

Imports nothing but the standard library's import machinery, so a process can use it before
anything else.
"""

from __future__ import annotations

import dis
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import CodeType, ModuleType
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


#: The instructions that load one of a code object's constants (LOAD_CONST, and RETURN_CONST or
#: KW_NAMES where the running Python has them), and the prefix that widens an instruction's argument.
_LOADS_CONST = tuple(dis.hasconst)
_EXTENDED_ARG = dis.opmap["EXTENDED_ARG"]


def without_docstrings(*packages: str, stdlib: bool = True) -> None:
    """From now on, the functions of the modules of ``packages`` (top-level names) and, with
    ``stdlib``, of the standard library are loaded without their docstrings, which no code of the
    farm's processes reads (``help()`` does): the strings are dropped from each code object as the
    module is loaded, before the module runs. Modules imported earlier keep theirs, and so do classes
    and modules (their ``__doc__`` is set by the code, and kept: an error's message may be its
    class's docstring, core/errors/base.py).

    A function's docstring is the first of its code object's constants, and nothing in its code
    loads it; a first constant that some instruction loads is left alone, whatever it is. That is
    what ``python -OO`` leaves out (with the asserts, which stay), without -OO's separate bytecode
    files. Only modules loaded from source or bytecode files by the standard path finder are
    affected; extension modules have no such code.
    """
    names = frozenset(packages) | (sys.stdlib_module_names if stdlib else frozenset())
    if not any(isinstance(finder, _DoclessFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DoclessFinder(names))


def _loads_first_const(code: CodeType) -> bool:
    raw = code.co_code
    for op in _LOADS_CONST:
        pattern = bytes((op, 0))
        at = raw.find(pattern)
        while at != -1:
            # Index 0, unless a non-zero EXTENDED_ARG widens the argument (a zero one is taken as
            # index 0: when in doubt, the constant is kept).
            if at % 2 == 0 and (at == 0 or raw[at - 2] != _EXTENDED_ARG or raw[at - 1] == 0):
                return True
            at = raw.find(pattern, at + 1)
    return False


def _strip_docstrings(code: CodeType) -> CodeType:
    consts = code.co_consts
    changed: list[object] | None = None
    for index, const in enumerate(consts):
        if type(const) is CodeType:
            stripped = _strip_docstrings(const)
            if stripped is not const:
                changed = changed or list(consts)
                changed[index] = stripped
    if consts and type(consts[0]) is str and not _loads_first_const(code):
        changed = changed or list(consts)
        changed[0] = None
    return code if changed is None else code.replace(co_consts=tuple(changed))


class _DoclessLoader(importlib.machinery.SourceFileLoader):
    """The standard loader of a module's source or bytecode file, less its functions' docstrings."""

    def get_code(self, fullname: str) -> CodeType | None:
        code = super().get_code(fullname)
        return None if code is None else _strip_docstrings(code)


class _DoclessFinder(importlib.abc.MetaPathFinder):
    """Finds a module as the other finders would, and loads it with _DoclessLoader when the standard
    path finder found it from a file and its top-level package is one of ``names``."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: importlib.machinery.ModuleSpec | None = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if type(spec.loader) is importlib.machinery.SourceFileLoader and spec.origin:
                spec.loader = _DoclessLoader(fullname, spec.origin)
            return spec
        return None
