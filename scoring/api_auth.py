"""Who calls the scoring API: a bearer token per caller (lakehouse.tokens); no token, no score.

Every call is audited; the rows are written in batches (one Delta commit per second at most), not
one per request.
"""

from __future__ import annotations

import hmac
import threading

from lakehouse import audit
from lakehouse.config import Config, RoleConf
from lakehouse.identity import Identity, identify
from lakehouse.tokens import server_tokens


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
