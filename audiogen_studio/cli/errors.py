"""User-facing command-line errors."""

from __future__ import annotations


class CliError(Exception):
    """A user-facing command-line error: one line on stderr, exit code 2."""
