"""Keyed hashing of PII inside Spark, with the key kept out of every plan, log and command line.

The same clear value always maps to the same token (joins and distinct counts still work), but
without the key nobody can rebuild the token from a guessed card number or email. The hash runs in
a JVM function (jvm/: `tidewater_pii_token`) that reads the key from its own process environment:
a query names only the variable, so EXPLAIN, the Spark UI and event logs never see the key or
anything derived from it. Tables that hold tokens record the key's fingerprint, so a run with
another key stops instead of writing tokens that no longer join.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
from typing import Iterator

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.errors import SecretMissing, TidewaterError
from lakehouse.jvm_functions import PII_KEY_FINGERPRINT, PII_TOKEN

log = logging.getLogger(__name__)

# Published on purpose: only the `local` env may use it, so demo data never needs a real secret.
DEMO_KEY = "tidewater-demo-key-not-secret"
FINGERPRINT_PROPERTY = "tidewater.piiKeyFingerprint"  # Delta table property of tables holding tokens
_FINGERPRINT_LABEL = b"tidewater pii key fingerprint"  # same text as jvm/.../PiiKeyFingerprint.java
_warned: list[bool] = []


class PiiKeyMismatch(TidewaterError):
    """The key at hand is not the key that hashed the tables (or the one Spark's JVM holds)."""


def pii_key(cfg: Config) -> bytes:
    """The hashing key from the environment; the demo key only where the env allows it."""
    value = os.environ.get(cfg.secrets.pii_key_env)
    if value:
        return value.encode()
    if cfg.secrets.allow_demo_key:
        if not _warned:
            _warned.append(True)
            log.warning("%s is not set: hashing PII with the public demo key (env %s only)",
                        cfg.secrets.pii_key_env, cfg.env)
        return DEMO_KEY.encode()
    raise SecretMissing(f"{cfg.secrets.pii_key_env} is not set (needed to hash PII in env {cfg.env!r})",
                        hint=f"export {cfg.secrets.pii_key_env}=<secret> from your secret store")


@contextlib.contextmanager
def key_in_environment(cfg: Config) -> Iterator[None]:
    """While a JVM is launched: the demo key in its environment where the env allows it and none is set.

    A real key is inherited from the caller's environment as it is; nothing is added to a command line.
    """
    name = cfg.secrets.pii_key_env
    if os.environ.get(name) or not cfg.secrets.allow_demo_key:
        yield
        return
    os.environ[name] = DEMO_KEY
    try:
        yield
    finally:
        os.environ.pop(name, None)


def pii_token(col: Column, cfg: Config) -> Column:
    """HMAC-SHA256 of a string column as 64 hex characters (null stays null), keyed in the JVM."""
    return F.call_function(PII_TOKEN, col, F.lit(cfg.secrets.pii_key_env))


def hmac_sha256_py(value: str, key: bytes) -> str:
    """The same token computed in Python (for lookups by a known clear value)."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def key_fingerprint(key: bytes) -> str:
    """16 hex characters that tell keys apart and reveal nothing usable about them."""
    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]


def checked_key(spark: SparkSession, cfg: Config) -> str:
    """The key's fingerprint, once Spark is known to hash with that same key (driver and executors).

    A job that hashes calls this before anything else.
    """
    ours = key_fingerprint(pii_key(cfg))
    name = cfg.secrets.pii_key_env
    theirs = spark.range(1).select(F.call_function(PII_KEY_FINGERPRINT, F.lit(name))).first()[0]
    if theirs is None:
        raise SecretMissing(f"{name} is not set in Spark's JVM, which hashes PII",
                            hint=f"export {name} before the Spark application starts (spark-submit, services)")
    if theirs != ours:
        raise PiiKeyMismatch(f"Spark's JVM holds another {name} than this process (fingerprint {theirs} vs {ours})",
                             hint="the key changed after Spark started: start the command again")
    return ours


def check_table_key(table: str, recorded: str | None, fingerprint: str, key_env: str) -> None:
    """Stop before writing tokens with another key than the one that hashed the table."""
    if recorded is not None and recorded != fingerprint:
        raise PiiKeyMismatch(f"{table} was hashed with another key (fingerprint {recorded}; "
                             f"{key_env} now has {fingerprint}): its tokens would no longer join",
                             hint=f"export the {key_env} that hashed it; changing keys means rebuilding "
                                  "silver from bronze under the new one")
