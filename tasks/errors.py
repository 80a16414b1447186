"""The errors a person can act on. Each user-facing failure is one of these types; the CLI maps them to
an exit code in one place (flows/cli.py) and prints their message as one line (`-v`: the traceback too).

- `UserError` (exit 2): the input is wrong (a job file, a setting, a model URI); fix it and run again.
- `Failure` (exit 1): the input is fine but the run could not be done (a server down, a disk full, a
  catalog that cannot be read, another run of the same job in progress).
"""

from __future__ import annotations


class UserError(Exception):
    exit_code = 2

    def lines(self) -> list[str]:
        """What to print, one line each."""
        return [str(self)]


class Failure(Exception):
    exit_code = 1

    def lines(self) -> list[str]:
        return [str(self)]


class CatalogError(Failure):
    """The catalog cannot be used: not a database, damaged, or written by a newer yotsuba."""


class ModelNotFound(UserError):
    """A model URI that names no model (or a registry that cannot be read)."""
