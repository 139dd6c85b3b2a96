"""Feast's file registry, written so that a reader never sees it half written.

Feast's own file store truncates registry.db and writes it again in place on every apply and
every materialization; a process reading it in between (the API, the features stream, a job)
parses an empty or cut-off registry and finds no feature views. This store writes a scratch file
beside it and renames it over the old one: readers see the old registry or the new one, whole.
"""

from __future__ import annotations

import os
import tempfile
import uuid

from feast.infra.registry.file import FileRegistryStore
from feast.utils import _utc_now

REGISTRY_STORE = f"{__name__}.AtomicFileRegistryStore"


class AtomicFileRegistryStore(FileRegistryStore):
    def _write_registry(self, registry_proto) -> None:
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(_utc_now())
        folder = self._filepath.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(dir=folder, prefix=f".{self._filepath.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(registry_proto.SerializeToString())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(scratch, self._filepath)
        except BaseException:
            if os.path.exists(scratch):
                os.unlink(scratch)
            raise
