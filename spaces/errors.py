"""paretune's user-facing errors.

Every mistake a user can make (a bad spec, an unknown model, a bad storage URL, an unknown study)
raises a subclass of :class:`UserError`. The CLI prints its message as one line and exits with
status 2; anything else is an internal error and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for; the message is one line that says how to fix it."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class SpecError(UserError):
    """The study spec is unreadable or invalid."""


class ModelError(UserError):
    """The model cannot be resolved, loaded or adapted."""


class DataError(UserError):
    """The task's data set cannot be found, read or split."""
