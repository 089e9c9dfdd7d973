"""The one way neonsim replaces a file that must survive a crash whole.

Every file a node or `up` rewrites (fleet.json, pids.json, tokens, the inventory, pageserver location configs and
layer files, safekeeper control files and trimmed WAL, the compute's spec and postgresql.conf, the storage
controller's state) goes through `write_durably`: after a crash (or SIGKILL) the path holds either the old or the
new content, never a mix, and once the call returns the new content and its name are on disk. That is upstream's
rule too (`libs/utils/src/crashsafe.rs`, `overwrite`, and `pageserver/src/virtual_file.rs`, `crashsafe_overwrite`:
temp file, fsync, rename, fsync the directory).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_dir(directory: str | Path) -> None:
    """Make the directory's entries (a rename, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: str | Path, data: bytes | str, *, mode: int | None = None) -> int:
    """Replace `path` with `data` (str is written as UTF-8): write `<name>.tmp` beside it, fsync it, rename it over
    `path`, fsync the directory. `mode` sets the permission bits before any content is written (for secrets).
    Returns the number of bytes written. The parent directory must exist."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with open(tmp, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
    return len(raw)
