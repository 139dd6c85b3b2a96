"""Keyed hashing of PII inside Spark: HMAC-SHA256 in SQL expressions, so no Python UDF is needed.

The same clear value always maps to the same token (joins and distinct counts still work), but
without the key nobody can rebuild the token from a guessed card number or email.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os

from pyspark.sql import Column
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.errors import SecretMissing

log = logging.getLogger(__name__)

# Published on purpose: only the `local` env may use it, so demo data never needs a real secret.
DEMO_KEY = "tidewater-demo-key-not-secret"
_BLOCK = 64  # SHA-256 block size in bytes
_warned: list[bool] = []


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


def hmac_sha256(col: Column, key: bytes) -> Column:
    """HMAC-SHA256 of a string column as 64 hex characters; null stays null."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    ipad = bytes(b ^ 0x36 for b in key).hex()
    opad = bytes(b ^ 0x5C for b in key).hex()
    inner = F.sha2(F.concat(F.unhex(F.lit(ipad)), F.encode(col, "UTF-8")), 256)
    return F.when(col.isNull(), None).otherwise(
        F.sha2(F.concat(F.unhex(F.lit(opad)), F.unhex(inner)), 256))


def hmac_sha256_py(value: str, key: bytes) -> str:
    """The same token computed in Python (for lookups by a known clear value)."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
