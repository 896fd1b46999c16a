"""Errors the CLI turns into one line on stderr."""


class SeawallError(Exception):
    """A runtime failure: reported as one line, exit status 1."""


class UsageError(SeawallError):
    """Bad input from the user: reported as one line, exit status 2."""
