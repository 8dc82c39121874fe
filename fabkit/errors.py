"""The one error hierarchy of fabperf, with the exit code each kind maps to."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def excerpt(value: Any, limit: int = 80) -> str:
    """A repr of ``value`` of at most ``limit`` characters (long values are cut with …)."""
    try:
        text = repr(value)
    except RecursionError:  # a self-referencing structure
        text = f"<{type(value).__name__}>"
    if len(text) > limit:
        keep = max(limit - 12, 8)
        text = f"{text[:keep]}… ({len(text)} chars)"
    return text


class FabperfError(Exception):
    """Base error: a message for the user, an optional hint, and the process exit code."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class InputError(FabperfError):
    """Bad input from the user: a file, a field, an option. Exit code 2."""

    exit_code = 2

    @classmethod
    def field(
        cls,
        file: str | Path | None,
        path: str,
        expected: str,
        found: object,
        *,
        hint: str | None = None,
    ) -> InputError:
        """An error naming the file, the field path, what was expected and what was found."""
        where = f"{file}: " if file is not None else ""
        return cls(f"{where}{path}: expected {expected}, found {excerpt(found)}", hint=hint)


class ExternalError(FabperfError):
    """An external system failed (a command, a cloud API, a VM). Exit code 1."""

    exit_code = 1
