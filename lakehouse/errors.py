"""Typed errors whose message tells a user what went wrong, where, and what to do next."""


class TidewaterError(Exception):
    """Base error: `str(err)` is one line; `hint` is an optional next step."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class ConfigError(TidewaterError):
    """The configuration files or overrides are unreadable or invalid."""


class SecretMissing(TidewaterError):
    """A secret the job needs is not in the environment."""


class LandingNotFound(TidewaterError):
    """The landing folder the ingest job reads does not exist."""


class TableNotFound(TidewaterError):
    """A table name is not configured, or the table has not been written yet."""


class JobNotFound(TidewaterError):
    """No installed job has the requested name."""


class SetupIncomplete(TidewaterError):
    """Something `make setup` provides (the Delta jars, the environment) is missing."""


def describe(err: BaseException) -> tuple[str, str | None]:
    """One line for any error: ours keep their hint; Spark's lose the JVM stack trace."""
    if isinstance(err, TidewaterError):
        return str(err), err.hint
    text = str(err).strip()
    java_error = getattr(err, "java_exception", None)
    if java_error is not None and not text.startswith("["):
        text = str(java_error.getMessage() or java_error.toString())
    first = text.splitlines()[0] if text else type(err).__name__
    hint = "run with TIDEWATER_DEBUG=1 for the full trace" if text.count("\n") else None
    return f"{type(err).__name__}: {first}", hint
