"""The workbook's own error for bad input: what the user passed or pointed at is wrong.

Every error that means "your input is wrong, here is the fix" derives from
:class:`WorkbookInputError`; the ``mlops-workbook`` command maps it, and only it, to
exit 2 with its one-line message. A failure of something the workbook relies on (a server
that does not start, a tracking store that fails mid-way) is a :class:`WorkbookFailure`:
its message and exit 1. Anything else that escapes a command is a bug: a traceback and
exit 1. The module imports nothing, so the command line can use it
before any heavy library loads.
"""

from __future__ import annotations


class WorkbookInputError(Exception):
    """Bad input to the workbook; the message names the value and the fix (CLI exit 2)."""


class WorkbookFailure(Exception):
    """Something the workbook relies on failed (a server did not start, the tracking store
    broke mid-way); not bad input and not a bug: the CLI prints the message, no traceback,
    and exits 1."""
