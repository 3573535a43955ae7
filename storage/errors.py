"""Errors of the storage layer: the store cannot be opened, read or written."""

from __future__ import annotations

from pathlib import Path

from icsight.errors import IcsightError


class StoreError(IcsightError):
    """The event store at `path` is unavailable: unwritable, corrupt, locked or of a newer schema.

    The CLI maps it to exit code `E_STORE`.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")
