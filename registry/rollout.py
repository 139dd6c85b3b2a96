"""Alias moves, each recorded in meta.model_deployments: promote, start and stop a live rollout.

A validated challenger reaches traffic by `deployment.strategy`: `direct` makes it champion, `shadow`
gives it the alias `shadow` (it scores the same traffic; only the champion decides) and `canary`
the alias `canary` (it decides for a stable hashed share of the traffic). At most one rollout is
live: starting one stops any other. The champion alias moves only by `promote`.
"""

from __future__ import annotations

import datetime as dt

from lakehouse.config import Config
from lakehouse.model_store import alias_version
from registry import contract
from registry.deployments import Deployment, deployment

STRATEGY_ALIAS = {"shadow": contract.SHADOW, "canary": contract.CANARY}


def live_rollout(cfg: Config) -> tuple[str, int] | None:
    """(alias, version) of the live shadow or canary model, if any."""
    for alias in (contract.CANARY, contract.SHADOW):
        version = alias_version(cfg, alias)
        if version is not None:
            return alias, version
    return None


def stop_rollout(client, cfg: Config, action: str, reason: str, run_id: str | None) -> list[Deployment]:
    """Take the live rollout's alias away (action `rollback`, or `<alias>_stop` when it ends otherwise)."""
    live = live_rollout(cfg)
    if live is None:
        return []
    alias, version = live
    client.delete_registered_model_alias(cfg.training.model_name, alias)
    return [deployment(cfg, alias, action, version, None, reason, run_id)]


def start_rollout(client, cfg: Config, strategy: str, version: int, reason: str, run_id: str | None) -> list[Deployment]:
    alias = STRATEGY_ALIAS[strategy]
    moves = stop_rollout(client, cfg, f"{alias}_stop", f"replaced by v{version}", run_id)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    client.set_model_version_tag(cfg.training.model_name, str(version), contract.LIVE_SINCE, now.isoformat())
    client.set_registered_model_alias(cfg.training.model_name, alias, str(version))
    share = f" for {cfg.deployment.canary_share:.0%} of {cfg.deployment.route_key}s" if alias == contract.CANARY else ""
    return moves + [deployment(cfg, alias, f"{alias}_start", None, version, reason + share, run_id)]


def promote(client, cfg: Config, version: int, reason: str, run_id: str | None) -> list[Deployment]:
    """Make `version` the champion; a rollout of that version ends with it."""
    champion = alias_version(cfg, contract.CHAMPION)
    moves = []
    live = live_rollout(cfg)
    if live is not None and live[1] == version:
        moves = stop_rollout(client, cfg, f"{live[0]}_stop", f"v{version} promoted", run_id)
    client.set_registered_model_alias(cfg.training.model_name, contract.CHAMPION, str(version))
    return moves + [deployment(cfg, contract.CHAMPION, "promote", champion, version, reason, run_id)]
