"""A subject's rows out of the online store (Feast: SQLite by default, or Redis).

Feast has no call that deletes one entity, so this goes to the store Feast wrote, with Feast's own
key encoding and table names. SQLite deletes with `secure_delete` on: the freed pages are zeroed,
not left in the file. Redis keeps one hash per entity (every view's features in it): deleting the
key deletes them all; snapshots Redis wrote before still hold them until they are rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass

from lakehouse.config import Config
from features.store import definitions, online_store_errors, repo_config


@dataclass(frozen=True)
class OnlineErasure:
    view: str  # online:<view>
    rows: int  # SQLite rows (one per feature) or Redis keys removed


def _entity_key(key: str, subject: str):
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(join_keys=[key], entity_values=[Value(string_val=subject)])


def _subject_views(cfg: Config) -> list:
    from feast import FeatureView

    keyed = {name for name, view in cfg.features.views.items() if view.key == cfg.governance.subject_key}
    return [obj for obj in definitions(cfg) if isinstance(obj, FeatureView) and obj.name in keyed]


def _sqlite(config, views: list, entity_key, dry_run: bool) -> list[OnlineErasure]:
    import sqlite3
    from pathlib import Path

    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import compute_table_id

    path = Path(config.online_store.path)
    if not path.is_file():
        return []
    key = serialize_entity_key(entity_key, entity_key_serialization_version=config.entity_key_serialization_version)
    out = []
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA secure_delete = ON")
        for view in views:
            table = compute_table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
            quoted = '"' + table.replace('"', '""') + '"'
            try:
                rows = conn.execute(f"SELECT count(*) FROM {quoted} WHERE entity_key = ?", (key,)).fetchone()[0]
            except sqlite3.OperationalError:  # the view was never materialized
                continue
            if rows and not dry_run:
                conn.execute(f"DELETE FROM {quoted} WHERE entity_key = ?", (key,))
            out.append(OnlineErasure(f"online:{view.name}", rows))
    return out


def _redis(config, views: list, entity_key, dry_run: bool) -> list[OnlineErasure]:
    from feast.infra.online_stores.helpers import _redis_key
    from feast.infra.online_stores.redis import RedisOnlineStore

    client = RedisOnlineStore()._get_client(config.online_store)  # Feast's own connection-string parsing
    key = _redis_key(config.project, entity_key, entity_key_serialization_version=config.entity_key_serialization_version)
    found = int(client.exists(key))
    if found and not dry_run:
        client.delete(key)
    return [OnlineErasure(f"online:{view.name}", found) for view in views]


def erase_online(cfg: Config, subject: str, dry_run: bool = False) -> list[OnlineErasure]:
    """Remove (or with dry_run, count) the subject's online rows in every view keyed by the subject key."""
    views = _subject_views(cfg)
    if not views:
        return []
    config = repo_config(cfg)
    entity_key = _entity_key(cfg.governance.subject_key, subject)
    with online_store_errors(cfg):
        if cfg.features.online_store == "redis":
            return _redis(config, views, entity_key, dry_run)
        return _sqlite(config, views, entity_key, dry_run)
