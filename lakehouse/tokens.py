"""Caller tokens: one per identity, for the scoring API and the SQL server alike.

Tokens come from the environment (`access.tokens_env`: `name=token,...`). Where none is set, the
first server that needs them makes one for the identity that starts it and keeps it in
<root>/services/tokens, readable only by its owner, so a local caller (tests, benchmarks, curl, a
BI tool on this machine) has one without a secret in the repository.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from lakehouse.config import Config
from lakehouse.errors import ConfigError
from lakehouse.identity import current_user


def token_file(cfg: Config) -> Path:
    return cfg.root / "services" / "tokens"


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


def tokens_text(cfg: Config) -> str:
    """The tokens as a server process gets them in its environment (`name=token,...`)."""
    return ",".join(f"{name}={token}" for token, name in server_tokens(cfg).items())


def client_credentials(cfg: Config, caller: str | None = None) -> tuple[str, str]:
    """(name, token) a local caller signs in with: its own entry, else the first one there is."""
    tokens = server_tokens(cfg)
    caller = caller or current_user()
    token = next((t for t, name in tokens.items() if name == caller), next(iter(tokens)))
    return tokens[token], token


def client_token(cfg: Config, caller: str | None = None) -> str:
    return client_credentials(cfg, caller)[1]
