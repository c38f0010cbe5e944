"""Exceptions that carry a message meant for the user (the CLI prints it without a traceback)."""

from __future__ import annotations

__all__ = ["RVRTError", "InputError", "WeightsError", "DownloadError"]


class RVRTError(Exception):
    """Base class: something the user can fix (bad input, missing file, impossible option)."""


class InputError(RVRTError, ValueError):
    """An input file, folder, tensor or option is missing, corrupt or of the wrong kind."""


class WeightsError(RVRTError):
    """Weights cannot be found, read, or do not fit the architecture."""


class DownloadError(RVRTError):
    """A download failed, was refused (offline) or did not match its checksum."""
