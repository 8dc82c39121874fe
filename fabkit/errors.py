"""The one error hierarchy of fabperf, with the exit code each kind maps to."""

from __future__ import annotations

from pathlib import Path


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
        from fabkit.inputs import excerpt  # (fabkit.inputs imports this module)

        where = f"{file}: " if file is not None else ""
        return cls(f"{where}{path}: expected {expected}, found {excerpt(found)}", hint=hint)


class ExternalError(FabperfError):
    """An external system failed (a command, a cloud API, a VM). Exit code 1."""

    exit_code = 1
