"""The metadata reads of `lakehouse.delta_reader`, through Spark: for tables delta-rs cannot read.

Same functions, same rows (through Arrow, so the dicts come back exactly as delta_reader gives them);
a command falls back to this reader when delta_reader raises `NeedsSpark`.
"""

from __future__ import annotations

from typing import Any, Callable

from lakehouse.config import Config
from lakehouse.delta_reader import arrow_rows, delta_exists


class SparkReader:
    def __init__(self, cfg: Config):
        from lakehouse.session import build_session

        self.spark = build_session(cfg)

    def table_version(self, cfg: Config, name: str) -> int | None:
        from lakehouse.tables import current_version

        return current_version(self.spark, cfg.table(name))

    def read_rows(self, cfg: Config, name: str, where: Callable | None = None) -> list[dict]:
        from lakehouse.tables import read_table

        ref = cfg.table(name)
        if not delta_exists(ref.path):
            return []
        return arrow_rows(read_table(self.spark, ref).toArrow(), where)

    def table_inventory(self, cfg: Config) -> list[dict[str, Any]]:
        from lakehouse.tables import read_table

        out = []
        for name in cfg.table_names():
            version = self.table_version(cfg, name)
            if version is not None:
                rows = read_table(self.spark, cfg.table(name), version).count()
                out.append({"name": name, "version": version, "rows": rows, "path": cfg.table(name).path})
        return out
