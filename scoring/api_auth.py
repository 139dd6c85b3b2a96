"""Who calls the scoring API: a bearer token per caller; no token, no score; every call audited.

Tokens come from the environment (`access.tokens_env`: `name=token,...`). Where none is set, the
API makes one for the identity that starts it and keeps it in <root>/services/api/tokens, readable
only by its owner, so a local caller (tests, benchmarks, curl) has one without a secret in the repo.
Audit rows are written in batches (one Delta commit per second at most), not one per request.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
from pathlib import Path

from lakehouse import audit
from lakehouse.config import Config, RoleConf
from lakehouse.errors import ConfigError
from lakehouse.identity import Identity, current_user, identify


def token_file(cfg: Config) -> Path:
    return cfg.root / "services" / "api" / "tokens"


def parse_tokens(text: str, where: str) -> dict[str, str]:
    """`name=token,...` (or one per line) -> {token: name}."""
    tokens = {}
    for item in text.replace("\n", ",").split(","):
        if not item.strip():
            continue
        name, sep, token = item.strip().partition("=")
        if not sep or not name or len(token) < 16:
            raise ConfigError(f"{where}: each entry must be name=token with a token of 16+ characters",
                              hint="for example analyst=$(openssl rand -hex 16)")
        tokens[token] = name
    return tokens


def server_tokens(cfg: Config) -> dict[str, str]:
    """{token: caller} from the environment, else the local token file (made for the current user)."""
    value = os.environ.get(cfg.access.tokens_env)
    if value:
        return parse_tokens(value, f"${cfg.access.tokens_env}")
    path = token_file(cfg)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"{current_user()}={secrets.token_hex(16)}\n")
    return parse_tokens(path.read_text(), str(path))


def client_token(cfg: Config, caller: str | None = None) -> str:
    """The token a local caller sends (its own entry; the first one where it has none)."""
    tokens = server_tokens(cfg)
    caller = caller or current_user()
    return next((t for t, name in tokens.items() if name == caller), next(iter(tokens)))


ANONYMOUS = Identity("anonymous", "-", RoleConf())  # a call without a valid token, as the audit log names it


class Callers:
    """Checks bearer tokens and keeps the audit rows of calls until the next flush."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.tokens = server_tokens(cfg)
        self.pending: list[audit.AuditEntry] = []
        self.lock = threading.Lock()

    def caller(self, authorization: str | None) -> Identity | None:
        """The caller a header names, or None (missing, malformed or unknown token)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        for known, name in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                return identify(self.cfg, name)
        return None

    def called(self, who: Identity | None, route: str, outcome: str, **fields) -> None:
        with self.lock:
            self.pending.append(audit.entry(who or ANONYMOUS, "api", route, outcome, **fields))

    def flush(self) -> None:
        with self.lock:
            rows, self.pending = self.pending, []
        audit.record(self.cfg, rows)
