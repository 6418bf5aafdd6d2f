"""The exception hierarchy is what monitoriza/exceptions.py says it is."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import monitoriza
from monitoriza.exceptions import MonitorizaError

# Control-flow signals, not failures: they need not derive from MonitorizaError.
SIGNALS = {"monitoriza.stack.up.Interrupted"}


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in a monitoriza module, by its qualified name."""
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(monitoriza.__path__, "monitoriza."):
        if module_info.name.endswith(".__main__"):  # importing it runs the command line
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == module.__name__):
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_public_exception_derives_from_monitoriza_error() -> None:
    """Each public exception class is a MonitorizaError, except the listed signals."""
    classes = _exception_classes()
    assert len(classes) > 15, "the walk found the package's exceptions"
    stray = sorted(name for name, cls in classes.items()
                   if not issubclass(cls, MonitorizaError) and name not in SIGNALS
                   and not name.rsplit(".", 1)[1].startswith("_"))
    assert stray == [], stray


def test_the_listed_signals_exist() -> None:
    """The exemption list names real classes (a renamed one must leave the list)."""
    assert set(_exception_classes()) >= SIGNALS
