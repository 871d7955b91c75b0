"""Files through Beam's FileSystems (local, gs://, s3://): atomic writes, whole-file reads, sorted globs.

One copy for every layer that writes or reads run files: engines (the sample cache), transforms (shards, dead
letters), pipelines (the manifest) and commands (export, verify, report).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from apache_beam.io.filesystems import FileSystems


def atomic_write(path: str | Path, payload: bytes) -> None:
    """Write `payload` to a temp file beside `path`, then rename it onto `path`: a reader never sees half a file,
    and a retried bundle overwrites with the same bytes."""
    path = str(path)
    temp = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(temp) as handle:
        handle.write(payload)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temp], [path])


def read_bytes(path: str | Path) -> bytes:
    with FileSystems.open(str(path)) as handle:
        return handle.read()


def glob(pattern: str) -> list[str]:
    """The paths matching `pattern`, sorted (an empty match is an empty list)."""
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
