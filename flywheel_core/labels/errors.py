"""Errors a user can fix by changing the label file or the import options."""

from __future__ import annotations


class LabelFileError(ValueError):
    """The file cannot be imported as a whole; the message says why and what to do."""
