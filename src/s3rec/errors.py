"""Errors that the command line reports as one line with exit status 2 (no traceback)."""

from __future__ import annotations


class S3RecError(Exception):
    """Base class for errors caused by the user's input, files or settings."""


class DataError(S3RecError):
    """A data file is malformed: names the file, the line (when known) and the problem."""

    def __init__(self, path, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class ConfigError(S3RecError):
    """An unknown or invalid setting."""


class CheckpointError(S3RecError):
    """A missing, unreadable or incompatible checkpoint."""


class DivergedError(S3RecError):
    """Training produced NaN or infinite values."""
