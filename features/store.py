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
import weakref
from pathlib import Path
from typing import Iterator

from lakehouse.config import Config, FeatureViewConf
from lakehouse.errors import ConfigError, TidewaterError
from features.compute import EVENT_TIME


def _quiet_feast() -> None:
    """Feast warns that its Spark store is "alpha" on every call; our tests pin what we rely on."""
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"feast\.")

REDIS_PASSWORD_ENV = "TIDEWATER_REDIS_PASSWORD"
TIMESTAMP_SUFFIX = "__ts"  # Feast's name for a feature's event time in to_dict(include_event_timestamps=True)
_VIEWS: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()  # store -> its views (_feature_view)
# Feast value kinds that are the Python value as stored (the rest go through Feast's own conversion).
_SCALARS = frozenset({"int32_val", "int64_val", "float_val", "double_val", "string_val", "bool_val", "bytes_val"})


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


def _feature_view(store, name: str):
    """The registered view, once per store: Feast rebuilds it from the registry's proto on every
    get_feature_view (0.7 ms, more than a one-entity read); its definitions come from conf, fixed
    for the life of a process."""
    views = _VIEWS.setdefault(store, {})
    if name not in views:
        views[name] = store.get_feature_view(name, allow_registry_cache=True)
    return views[name]


def online_features(cfg: Config, key: str, values: list[str], features: list[str] | None = None,
                    store=None, timestamps: bool = False) -> dict[str, list]:
    """Latest online values for entities (the lookup scoring code uses): {column: [values...]}, the
    entity key first, as Feast's `get_online_features(...).to_dict()` gives them; with `timestamps`,
    also <feature>__ts, the epoch second of the feature row (0 where the store has none).

    One read of the store per call, through Feast's own online store (its key encoding, its values).
    Feast's get_online_features builds a response proto value by value first: two thirds of a
    100-entity lookup went there (benchmarks/scoring.py), so the values are taken as read instead.
    """
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type

    name, view = view_for_entity(cfg, key)
    declared = [f.name for f in view.features]
    names = list(features) if features else declared
    unknown = [f for f in names if f not in declared]
    if unknown:
        raise ConfigError(f"{name} has no feature {', '.join(unknown)}", hint=f"its features: {', '.join(declared)}")
    store = store or feature_store(cfg, apply=False)
    keys = [EntityKey(join_keys=[key], entity_values=[Value(string_val=v)]) for v in values]
    with online_store_errors(cfg):
        found = store.provider.online_read(store.config, _feature_view(store, name), keys, names)
    out: dict[str, list] = {key: list(values), **{f: [] for f in names}}
    stamps: dict[str, list] = {f + TIMESTAMP_SUFFIX: [] for f in names} if timestamps else {}
    for ts, row in found:
        second = int(ts.timestamp()) if ts is not None else 0
        for f in names:
            value = row.get(f) if row else None
            kind = value.WhichOneof("val") if value is not None else None
            out[f].append(None if kind is None else getattr(value, kind) if kind in _SCALARS
                          else feast_value_type_to_python_type(value))
            if timestamps:
                stamps[f + TIMESTAMP_SUFFIX].append(second if kind else 0)
    return {**out, **stamps}
