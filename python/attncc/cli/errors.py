"""The command line's own error: a message for the user and an exit status."""
from __future__ import annotations


class CliError(Exception):
    """Bad input to the command line (a file, a function, a flag): printed as
    `attncc <command>: error: <message>`, exit status `code` (2 like argparse's
    usage errors; 1 for a failed check)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
