"""Everything the platform writes is readable by its owner only.

Bronze and quarantine keep card numbers and emails in clear, online.db and mlflow.db hold features
and model metadata, the API's token file holds secrets: rather than chase each writer (Spark's JVM,
delta-rs, SQLite, MLflow, the servers), the process and every child it starts get umask 077.
"""

from __future__ import annotations

import os

OWNER_ONLY = 0o077
# Hadoop's file systems (Spark's and Delta's writes) apply their own umask, not the process's.
HADOOP_UMASK = {"spark.hadoop.fs.permissions.umask-mode": "077"}


def owner_only() -> None:
    """From here on, files and folders this process (and what it starts) creates are not group/world readable."""
    os.umask(os.umask(OWNER_ONLY) | OWNER_ONLY)
