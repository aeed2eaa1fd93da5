"""User-facing errors: one paragraph that names what was wrong and how to fix it.

The runner prints a `BnreproError` as its message alone (no traceback) and exits non-zero;
anything else is a bug and keeps its traceback.
"""


class BnreproError(Exception):
    """Bad input or environment that the user can fix; the message says how."""


class DataNotFoundError(BnreproError):
    """A data set's files were found in none of the places looked."""


class DataCorruptError(BnreproError):
    """A data set's files exist but are truncated, corrupt or of the wrong format."""
