"""Exceptions that carry a message meant for the user (the CLI prints it without a traceback).

Every error the user can fix is an :class:`RVRTError`; the command line prints its message as
one line and exits with status 2.
"""

from __future__ import annotations

__all__ = ["RVRTError", "InputError", "OutputError", "WeightsError", "DownloadError", "InsufficientMemoryError"]


class RVRTError(Exception):
    """Base class: something the user can fix (bad input, missing file, impossible option)."""


class InputError(RVRTError, ValueError):
    """An input file, folder, tensor or option (value or type) is missing, corrupt or of the wrong kind."""


class OutputError(RVRTError):
    """The output cannot be written: it exists, another run holds it, a resume does not match it,
    or the operating system refuses (permissions, read-only or full disk, a file where a folder
    should be)."""


class WeightsError(RVRTError):
    """Weights cannot be found, read, or do not fit the architecture."""


class DownloadError(RVRTError):
    """A download failed, was refused (offline) or did not match its checksum."""


class InsufficientMemoryError(RVRTError, MemoryError):
    """Not even the smallest tile fits in the memory available (the message says how much is needed)."""
