"""Errors a user can fix by changing the label file or the import options."""

from __future__ import annotations

from flywheel_core.errors import FlywheelError


class LabelFileError(FlywheelError, ValueError):
    """The file cannot be imported as a whole; the message says why and what to do."""
