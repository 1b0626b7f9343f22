"""User-facing errors.

A :class:`UserError` is raised for problems the user can fix (a missing file, a bad config
key, unreadable audio). The command line prints its message on one line and exits with
status 2, without a traceback; library callers can catch it like any exception.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, with a message that names it and the fix."""
