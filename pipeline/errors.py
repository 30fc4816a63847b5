"""The project's input-error types.

``InputError`` means the user's input cannot be used: a params file, a table, a media file, an
overrides file, a model folder. Stage commands and ``paha`` report it in one line naming the file
and the problem, with exit code 2; every other exception is a bug and ends with a traceback and
exit code 1. It subclasses ``ValueError`` so that callers that validate arguments keep working.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input, named in the message (file and problem)."""


class MissingInputError(InputError):
    """A file or folder the input names is missing (weights, a model folder, a checkpoint)."""


class ConfigError(InputError):
    """params.yaml is unreadable, has an unknown key or a value of the wrong type."""
