"""The Feast feature store, generated from the same declarations as the Spark feature jobs.

The offline store is Spark reading the Delta feature tables; the online store is SQLite under the
storage root, or Redis when `features.online_store: redis`. Feast reuses the active SparkSession,
so build the Delta-enabled session first (lakehouse.session.build_session).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import warnings
from pathlib import Path
from typing import Iterator

from lakehouse.config import Config, FeatureViewConf
from lakehouse.errors import TidewaterError
from features.compute import EVENT_TIME


def _quiet_feast() -> None:
    """Feast warns that its Spark store is "alpha" on every call; our tests pin what we rely on."""
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"feast\.")

REDIS_PASSWORD_ENV = "TIDEWATER_REDIS_PASSWORD"


def feast_dir(cfg: Config) -> Path:
    path = cfg.root / "feast"
    path.mkdir(parents=True, exist_ok=True)
    return path


def repo_config(cfg: Config):
    from feast import RepoConfig
    from feast.repo_config import RegistryConfig
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import SparkOfflineStoreConfig
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from features.registry_file import REGISTRY_STORE

    _quiet_feast()
    base = feast_dir(cfg)
    if cfg.features.online_store == "redis":
        timeout = cfg.features.redis_timeout_seconds
        connection = f"{cfg.features.redis_url},socket_timeout={timeout},socket_connect_timeout={timeout}"
        if os.environ.get(REDIS_PASSWORD_ENV):
            connection += f",password={os.environ[REDIS_PASSWORD_ENV]}"
        online = RedisOnlineStoreConfig(connection_string=connection)
    else:
        online = SqliteOnlineStoreConfig(path=str(base / "online.db"))
    registry = RegistryConfig(path=str(base / "registry.db"), registry_store_type=REGISTRY_STORE)
    return RepoConfig(project=cfg.features.project, provider="local", registry=registry,
                      offline_store=SparkOfflineStoreConfig(spark_conf=cfg.spark.conf),
                      online_store=online, entity_key_serialization_version=3, repo_path=str(base))


def definitions(cfg: Config) -> list:
    """Feast entities, sources and feature views for every declared view."""
    from feast import Entity, FeatureView, Field
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.table_format import DeltaFormat
    from feast.types import Float64, Int64
    from feast.value_type import ValueType

    objects: list = []
    for name, view in cfg.features.views.items():
        entity = Entity(name=view.entity, join_keys=[view.key], value_type=ValueType.STRING)
        source = SparkSource(name=f"{name}_source", path=cfg.table(view.table).path, table_format=DeltaFormat(),
                             timestamp_field=EVENT_TIME)
        schema = [Field(name=f.name, dtype=Int64 if f.dtype == "int64" else Float64) for f in view.features]
        objects += [entity, source, FeatureView(name=name, entities=[entity], ttl=dt.timedelta(days=view.ttl_days),
                                                schema=schema, source=source, online=True)]
    return objects


def feature_store(cfg: Config, apply: bool = True):
    """The FeatureStore for this config, with the declarations applied to its registry."""
    from feast import FeatureStore

    store = FeatureStore(config=repo_config(cfg))
    if apply:
        store.apply(definitions(cfg))
    return store


def feature_refs(cfg: Config, views: list[str] | None = None) -> list[str]:
    return [f"{name}:{f.name}" for name, view in cfg.features.views.items()
            if views is None or name in views for f in view.features]


def view_for_entity(cfg: Config, key: str) -> tuple[str, FeatureViewConf]:
    for name, view in cfg.features.views.items():
        if view.key == key:
            return name, view
    keys = ", ".join(v.key for v in cfg.features.views.values())
    from lakehouse.errors import ConfigError
    raise ConfigError(f"no feature view is keyed by {key!r}", hint=f"entity keys: {keys}")


class OnlineStoreUnavailable(TidewaterError):
    """The online store did not answer: the lookup or materialization stopped, nothing half-written is used."""


@contextlib.contextmanager
def online_store_errors(cfg: Config) -> Iterator[None]:
    """A Redis that is down or stopped answering becomes one line with a hint, not a hang or a trace."""
    try:
        yield
    except Exception as err:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeout

        if cfg.features.online_store != "redis" or not isinstance(err, (RedisConnectionError, RedisTimeout)):
            raise
        raise OnlineStoreUnavailable(
            f"the online store (Redis at {cfg.features.redis_url}) did not answer "
            f"(timeout {cfg.features.redis_timeout_seconds:g}s a try): {err}",
            hint="is redis-server running and reachable? (features.redis_url, features.redis_timeout_seconds); "
                 "materialize_online refills it once it answers") from None


def online_features(cfg: Config, key: str, values: list[str], features: list[str] | None = None,
                    store=None) -> dict[str, list]:
    """Latest online values for entities (the lookup scoring code uses): {column: [values...]}."""
    name, view = view_for_entity(cfg, key)
    refs = [f"{name}:{f}" for f in features] if features else feature_refs(cfg, [name])
    store = store or feature_store(cfg, apply=False)
    with online_store_errors(cfg):
        return store.get_online_features(features=refs, entity_rows=[{key: v} for v in values]).to_dict()
