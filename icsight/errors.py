"""Errors of the kernel and the CLI's exit codes (one per failure class, as capa does)."""

E_OK = 0
E_USAGE = 2
E_CAPTURE = 3        # unreadable, truncated or corrupt capture file
E_STORE = 4          # store unavailable or corrupt
E_CONFIG = 5         # bad configuration / rule / scenario file
E_INTERFACE = 6      # live interface cannot be opened


class IcsightError(Exception):
    """Base class of the project's own errors."""


class ConfigError(IcsightError, ValueError):
    """A configuration file is invalid; the message names the file and, where known, the place."""


class CaptureError(IcsightError):
    """A capture file cannot be read past some point; names the file and the frame."""

    def __init__(self, path: str, frame: int | None, reason: str):
        self.path, self.frame, self.reason = path, frame, reason
        where = f" at frame {frame}" if frame is not None else ""
        super().__init__(f"{path}{where}: {reason}")
