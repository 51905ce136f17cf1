"""The ``otpy@base`` contender: the otpy contender's code bound to an older otpy (``--base PATH``).

``PATH`` is a directory holding an older checkout's ``otpy/`` package (a
``git worktree`` or a ``git archive`` of a commit). Its package is imported
under the top-level name ``otpy_base``, next to the current ``otpy``, which
stays where it is in ``sys.modules``. Because the whole base package lives
under that name, its relative imports, including those inside functions (the
base's ``otpy.pipeline`` imports its ``_router`` lazily), resolve within the base.
Absolute ``import otpy`` inside the base package would bind the current otpy,
so ``load_base`` refuses a base that does that in code the benchmark runs.

The contender is not a second implementation: every ``bench/_otpy*.py``
(``_otpy``, ``_otpy_stage``, ``_otpy_flow``, and any added later) is imported
afresh while ``sys.modules["otpy"]`` and ``sys.modules["otpy.*"]`` briefly
name the base's modules, so that their ``import otpy`` binds the base. The
base modules they import by name (``otpy.stage``, ``otpy.flow``, ``otpy.pool``,
``otpy.ratelimit``, ``otpy.aio``) are imported
beforehand; any other ``otpy.*`` import fails meanwhile, which makes only the
workload that needs it n/a (``bench._otpy._import_part``). Afterwards the
originals are put back and the fresh copies stay in ``sys.modules`` as
``bench._otpy_at_base`` and so on.
Both otpy versions keep their own runtime state (each its own ``Runtime`` per
measurement) and share only the logger names (``otpy.*``).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import subprocess
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

BASE_NAME = "otpy@base"
"""The column of the older otpy."""

PACKAGE = "otpy_base"
"""The top-level name the base's ``otpy`` package is imported under."""

_BENCH_DIR = Path(__file__).resolve().parent

_CONTENDER_MODULES = tuple(f"bench.{path.stem}" for path in sorted(_BENCH_DIR.glob("_otpy*.py")))
"""The otpy contender's modules (``bench/_otpy*.py``), imported afresh against the base."""

_SUFFIX = "_at_base"
"""Appended to a contender module's name for its copy bound to the base."""

_NOT_RUN = ("demos", "__main__.py")
"""Parts of the base package the benchmark never imports: not checked for absolute imports."""


class BaseError(Exception):
    """``--base PATH`` cannot be used: no otpy package there, or it does not import."""


def check_path(path: str | Path) -> Path:
    """``path`` resolved, if it holds an ``otpy`` package.

    Raises:
        BaseError: there is no ``otpy/__init__.py`` under ``path``.
    """
    root = Path(path).expanduser().resolve()
    if not (root / "otpy" / "__init__.py").is_file():
        raise BaseError(
            f"{path}: there is no {root / 'otpy' / '__init__.py'}; --base takes a directory "
            "holding an older checkout's otpy/ package, e.g. one made with "
            "`git worktree add /tmp/otpy-base 799fa1d` or "
            "`mkdir /tmp/otpy-base && git archive 799fa1d | tar -x -C /tmp/otpy-base`"
        )
    return root


def _is_otpy(name: str, top: str = "otpy") -> bool:
    return name == top or name.startswith(top + ".")


def _forget_base() -> None:
    """Drop every ``otpy_base*`` module from ``sys.modules`` (a base that cannot be used)."""
    for name in [name for name in sys.modules if _is_otpy(name, PACKAGE)]:
        del sys.modules[name]


def _import_package(root: Path) -> ModuleType:
    """Import ``root/otpy`` as ``otpy_base``, and its modules that the contender imports.

    Those are the ``otpy.*`` modules that ``bench/_otpy*.py`` import by name
    (``_otpy_modules_used``), as far as the base has them; a part it lacks
    (or that fails to import) makes only its workloads n/a.
    """
    existing = sys.modules.get(PACKAGE)
    if existing is not None:
        loaded_from = Path(existing.__path__[0]).parent
        if loaded_from != root:
            raise BaseError(
                f"{root}: this process already imported {PACKAGE} from {loaded_from}; "
                "one base per process"
            )
        return existing
    package_dir = root / "otpy"
    spec = importlib.util.spec_from_file_location(
        PACKAGE, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
    )
    if spec is None or spec.loader is None:
        raise BaseError(f"{root}: cannot make an import spec for {package_dir / '__init__.py'}")
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    try:
        spec.loader.exec_module(package)
    except Exception as exc:
        _forget_base()
        raise BaseError(
            f"{root}: its otpy package does not import ({type(exc).__name__}: {exc})"
        ) from exc
    for name in sorted(_otpy_modules_used()):
        with contextlib.suppress(Exception):  # the contender's own import of it will say so
            importlib.import_module(PACKAGE + name[len("otpy") :])
    return package


def _otpy_modules_used() -> set[str]:
    """Every ``otpy.X`` that ``bench/_otpy*.py`` import, or might (``from otpy import X``)."""
    used: set[str] = set()
    for name in _CONTENDER_MODULES:
        path = _BENCH_DIR / f"{name.rpartition('.')[2]}.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                used.update(a.name for a in node.names if _is_otpy(a.name) and a.name != "otpy")
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "otpy":
                    used.update(f"otpy.{a.name}" for a in node.names)
                elif _is_otpy(node.module):
                    used.add(node.module)
    return used


def _absolute_self_imports(path: Path) -> Iterator[tuple[int, bool]]:
    """``(line, inside a function)`` of every ``import otpy...``/``from otpy... import`` in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))

    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[int, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import) and any(_is_otpy(a.name) for a in child.names):
                yield child.lineno, in_function
            elif (
                isinstance(child, ast.ImportFrom)
                and child.level == 0
                and child.module is not None
                and _is_otpy(child.module)
            ):
                yield child.lineno, in_function
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from visit(child, in_function or nested)

    yield from visit(tree, False)


def _check_self_imports(root: Path) -> None:
    """Refuse a base whose code the benchmark runs imports ``otpy`` by its absolute name.

    Such an import would bind the current otpy instead of the base. Checked:
    function-level imports in every module of the package (they run later,
    whenever the function does), module-level imports in the modules already
    imported. ``demos`` and ``__main__`` are never imported by the benchmark.

    Raises:
        BaseError: naming each offending ``file:line``.
    """
    package_dir = root / "otpy"
    loaded = {
        Path(file).resolve()
        for name, module in list(sys.modules.items())
        if _is_otpy(name, PACKAGE) and (file := getattr(module, "__file__", None))
    }
    offences = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir)
        if relative.parts[0] in _NOT_RUN:
            continue
        for line, in_function in _absolute_self_imports(path):
            if in_function or path.resolve() in loaded:
                offences.append(f"{path}:{line}")
    if offences:
        raise BaseError(
            f"{root}: its otpy package imports otpy by its absolute name, which would bind the "
            f"current otpy instead of the base: {', '.join(offences)}"
        )


class _OnlyTheBase(importlib.abc.MetaPathFinder):
    """While the contender's copies import: any ``otpy.*`` not aliased to the base fails."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if _is_otpy(fullname):
            raise ModuleNotFoundError(
                f"{fullname} is not part of the base package {PACKAGE} "
                f"(no {fullname.replace('otpy', PACKAGE, 1)} was imported)",
                name=fullname,
            )
        return None


_MISSING = object()


@contextmanager
def _otpy_names_the_base() -> Iterator[dict[str, ModuleType]]:
    """``sys.modules["otpy*"]`` are the base's modules meanwhile; yields the fresh contender modules.

    On the way out every ``otpy*`` key and the ``bench`` package's attributes
    are as they were; the contender's modules imported meanwhile are in the
    yielded dict (filled in on exit).
    """
    import bench

    saved = {
        name: sys.modules.pop(name)
        for name in list(sys.modules)
        if _is_otpy(name) or name in _CONTENDER_MODULES
    }
    attributes = {
        name: getattr(bench, name.rpartition(".")[2], _MISSING) for name in _CONTENDER_MODULES
    }
    aliases = {
        "otpy" + name[len(PACKAGE) :]: module
        for name, module in list(sys.modules.items())
        if _is_otpy(name, PACKAGE)
    }
    sys.modules.update(aliases)
    blocker = _OnlyTheBase()
    sys.meta_path.insert(0, blocker)
    fresh: dict[str, ModuleType] = {}
    try:
        yield fresh
    finally:
        sys.meta_path.remove(blocker)
        for name in list(sys.modules):
            if _is_otpy(name) or name in _CONTENDER_MODULES:
                module = sys.modules.pop(name)
                if name in _CONTENDER_MODULES:
                    fresh[name] = module
        sys.modules.update(saved)
        for name, value in attributes.items():
            attribute = name.rpartition(".")[2]
            if value is _MISSING:
                if hasattr(bench, attribute):
                    delattr(bench, attribute)
            else:
                setattr(bench, attribute, value)


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def describe(root: Path, package: ModuleType | None = None) -> str:
    """``0.1.0.dev0 (git 799fa1d)``: the package's ``__version__`` and, in a git checkout, its commit.

    Only a checkout whose top level is ``root`` itself counts (a ``git archive``
    unpacked inside another repository does not); ``+changes`` marks
    uncommitted changes under ``otpy/``.
    """
    version = getattr(package, "__version__", None) if package is not None else None
    shown = version if isinstance(version, str) else "no __version__"
    top = _git(root, "rev-parse", "--show-toplevel")
    commit = _git(root, "rev-parse", "--short", "HEAD")
    if top is not None and Path(top).resolve() == root and commit:
        dirty = _git(root, "status", "--porcelain", "--", "otpy")
        return f"{shown} (git {commit}{'+changes' if dirty else ''})"
    return f"{shown} (not a git checkout)"


def load_base(path: str | Path) -> Any:
    """The ``otpy@base`` contender: ``bench._otpy``'s contender on the otpy package under ``path``.

    Its ``name`` is ``"otpy@base"``, its ``version`` says which otpy
    (``describe``) and its ``source`` is ``path`` resolved.

    Raises:
        BaseError: no otpy package under ``path``, it does not import, or it
            imports otpy by its absolute name.
    """
    root = check_path(path)
    imported_now = PACKAGE not in sys.modules
    package = _import_package(root)
    try:
        if Path(package.__file__ or "").resolve() != root / "otpy" / "__init__.py":
            raise BaseError(f"{root}: {PACKAGE} was imported from {package.__file__}, not there")
        _check_self_imports(root)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with _otpy_names_the_base() as fresh:
                try:
                    contender = importlib.import_module("bench._otpy").make_contender()
                except Exception as exc:
                    raise BaseError(
                        f"{root}: bench._otpy does not import against its otpy package "
                        f"({type(exc).__name__}: {exc})"
                    ) from exc
    except BaseError:
        if imported_now:
            _forget_base()
        raise
    for warning in caught:
        print(f"note: {BASE_NAME}: {warning.message}", file=sys.stderr)
    for name, module in fresh.items():
        module.__name__ = name + _SUFFIX
        sys.modules[name + _SUFFIX] = module
    contender.name = BASE_NAME
    contender.version = describe(root, package)
    contender.source = str(root)
    return contender
