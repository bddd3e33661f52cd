"""Exceptions that carry a message a user can act on (the flag, the value, the fix).

The CLI prints them without a traceback; the gateway maps them to OpenAI-shaped HTTP errors in one place
(`serve/errors.py`).
"""

from __future__ import annotations


class EmpathyError(Exception):
    """Base class: an error whose message tells the user what to do."""

    exit_code = 1


class ConfigError(EmpathyError):
    """A setting or flag has a value that cannot work (names the setting and the fix)."""

    exit_code = 2


class DataError(EmpathyError):
    """Input data is missing or malformed (names the file, the line and the expected layout)."""


class JudgeError(EmpathyError):
    """The judge endpoint cannot be used (names the URL and what it answered)."""


class ModelError(EmpathyError):
    """A model or adapter is missing or does not fit (names the path and the base model)."""
