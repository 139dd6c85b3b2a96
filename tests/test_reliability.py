"""Reliability drills: each fault is made for real (a second writer, kill -9 at a commit, a bad file) and
"nothing lost" is an equation the test asserts."""

from __future__ import annotations

import subprocess
import sys

from lakehouse.config import load_config

# Applies the declarations to the Feast registry argv[2] times, as every job and the features service
# does when it starts.
APPLY_LOOP = """
import sys
from lakehouse.config import load_config
from features.store import feature_store
cfg = load_config("local", root=sys.argv[1])
for _ in range(int(sys.argv[2])):
    feature_store(cfg, apply=True)
"""


def test_a_reader_never_sees_the_feast_registry_half_written_while_another_process_applies(tmp_path):
    from feast import FeatureStore

    from features.store import feature_store, repo_config

    cfg = load_config("local", root=tmp_path)
    feature_store(cfg, apply=True)
    writer = subprocess.Popen([sys.executable, "-c", APPLY_LOOP, str(tmp_path), "400"])
    seen = []
    while writer.poll() is None:
        seen.append(len(FeatureStore(config=repo_config(cfg)).list_feature_views()))
    assert writer.returncode == 0 and len(seen) > 100
    assert set(seen) == {len(cfg.features.views)}, f"{seen.count(0)} of {len(seen)} reads found no feature view"
