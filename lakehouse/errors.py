"""Typed errors whose message tells a user what went wrong, where, and what to do next."""

import re


class TidewaterError(Exception):
    """Base error: `str(err)` is one line; `hint` is an optional next step."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class ConfigError(TidewaterError):
    """The configuration files or overrides are unreadable or invalid."""


class AccessDenied(TidewaterError):
    """The acting identity's role lacks a grant (conf `access`)."""


class SecretMissing(TidewaterError):
    """A secret the job needs is not in the environment."""


class LandingNotFound(TidewaterError):
    """The landing folder the ingest job reads does not exist."""


class TableNotFound(TidewaterError):
    """A table name is not configured, or the table has not been written yet."""


class JobNotFound(TidewaterError):
    """No installed job has the requested name."""


class UndeclaredTable(TidewaterError):
    """A job read or wrote a table its declaration does not name."""


class QualityGateFailed(TidewaterError):
    """A check with policy `fail` failed: the job stopped before writing its target."""


class SetupIncomplete(TidewaterError):
    """Something `make setup` provides (the Delta jars, the environment) is missing."""


class AlreadyRunning(TidewaterError):
    """Another run of a job that must not overlap holds its lock (lakehouse.locks)."""


_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")
_WRAPPERS = {"StreamingQueryException", "Py4JJavaError", "PythonException", "SparkException"}


def root_cause(err: BaseException) -> str:
    """The innermost `Type: message` line of an error, through Spark/Py4J wrappers."""
    text = str(err)
    causes = [m for m in map(_ERROR_LINE.match, text.splitlines()) if m and m.group(1) not in _WRAPPERS]
    if causes:
        return f"{causes[-1].group(1)}: {causes[-1].group(2).strip()}"
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


NO_SPACE = "No space left on device"


def describe(err: BaseException) -> tuple[str, str | None]:
    """One line for any error: ours keep their hint; Spark's lose the JVM stack trace."""
    if isinstance(err, TidewaterError):
        return str(err), err.hint
    text = str(err).strip()
    if NO_SPACE in text:  # Delta commits by rename: a write that ran out of space committed nothing
        return ("no space left on device: a write under the storage root failed, and nothing of it was committed",
                "free space there (or move the storage root: --root), then run the same command again: "
                "it resumes where it stopped")
    java_error = getattr(err, "java_exception", None)
    if java_error is not None and not text.startswith("["):
        text = str(java_error.getMessage() or java_error.toString())
    hint = "run with TIDEWATER_DEBUG=1 for the full trace" if text.count("\n") else None
    if type(err).__name__ in _WRAPPERS:
        return root_cause(err), hint
    first = text.splitlines()[0] if text else type(err).__name__
    return f"{type(err).__name__}: {first}", hint
