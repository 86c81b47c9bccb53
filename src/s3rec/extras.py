"""The optional dependencies (pyproject.toml's extras): each is imported only by the commands that need
it, and a missing one is a one-line error that says how to install it, e.g.
``s3rec tune needs optuna: pip install 's3rec[tune]'``.

- ``data``: pyarrow, for ``s3rec data import``, ``prepare``, ``export`` and ``synth``;
- ``tune``: optuna, for ``s3rec tune``;
- ``report``: matplotlib, for the PNG plots of ``s3rec report`` (its tables need nothing more);
- ``tensorboard``: TensorBoard event files in run folders (written when it is installed);
- ``all``: all of them (``test`` includes ``all``, so the test suite runs every test).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import S3RecError


class MissingExtra(S3RecError):
    """A command needs an optional dependency that is not installed."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` (e.g. ``"optuna"``) for ``what`` (e.g. ``"s3rec tune"``), or raise
    :class:`MissingExtra` naming the ``extra`` that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{what} needs {module.split('.')[0]}: pip install 's3rec[{extra}]'") from None


def available(package: str) -> bool:
    """Whether the top-level ``package`` is installed (found without importing it)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a finder that refuses it; a module object without a spec
        return False
