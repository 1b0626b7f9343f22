"""Atomic file writes: a file the library writes appears whole or not at all.

Every writer goes through :func:`replacing`: the content is written under a temporary name
beside the target (the same folder, so the rename stays on one file system), flushed to the
disk, then renamed onto the target with :func:`os.replace`, which POSIX makes atomic. A reader,
or a run killed mid-write, sees the old file or the new one, never a part of one; a failure
removes the temporary file and leaves the target as it was (docs/design.md, "Layers":
writing files). Torch-free, so the corpus builder and the pipeline use it
too. Folders that must appear at once (checkpoints, feature shards) are written the same way
by their own modules: a temporary folder, then one rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def temporary_name(path: Path, suffix: str = "") -> Path:
    """A hidden name beside ``path``, unique to this process and call, ending in ``suffix``
    (writers that pick the format from the file name, such as ``np.savez`` or matplotlib,
    need the target's suffix)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


_TEMPORARY = re.compile(r"^\..+\.tmp\d+(-[0-9a-f]{8})?")


def is_temporary(name: str) -> bool:
    """Whether a file name is one :func:`temporary_name` makes, or the ``.<name>.tmp<pid>``
    of the folder writers and of earlier versions (a writer killed mid-write leaves such a
    file behind; no final file is named so)."""
    return _TEMPORARY.match(name) is not None


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def replacing(path: str | Path, suffix: str = "", fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; when the block ends without
    an error, the temporary file is flushed to disk (``fsync``) and renamed onto ``path``.
    On an error it is removed and ``path`` is untouched. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path, suffix)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically."""
    with replacing(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str, fsync: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"), fsync=fsync)


def write_json(path: str | Path, obj: Any, fsync: bool = True, **dumps: Any) -> None:
    """Write ``json.dumps(obj, **dumps)`` to ``path`` atomically."""
    write_text(path, json.dumps(obj, **dumps), fsync=fsync)
