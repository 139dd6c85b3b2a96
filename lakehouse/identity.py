"""Who is acting: every command, job, query and API call runs as an identity with a role.

The identity is TIDEWATER_USER (a scheduler or service sets it), else the OS user; a scoring API
caller is the name its token belongs to. The role comes from conf `access`.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

from lakehouse.config import Config, RoleConf

ENV_USER = "TIDEWATER_USER"


@dataclass(frozen=True)
class Identity:
    name: str
    role: str
    grants: RoleConf

    @property
    def restricted(self) -> bool:
        """Whether anything is withheld from this identity (every table and PII otherwise)."""
        return self.grants.restricted


def current_user() -> str:
    return os.environ.get(ENV_USER) or getpass.getuser()


def identify(cfg: Config, name: str | None = None) -> Identity:
    """The identity `name` (default: the current user) with its configured role."""
    name = name or current_user()
    role = cfg.access.role_of(name)
    return Identity(name, role, cfg.access.roles[role])
