"""Writing output files atomically: a reader (or a later run) sees the old complete file or the
new complete file, never a truncated one, whatever happens mid-write (a kill, a full disk)."""

import os
import secrets
from pathlib import Path


def write_atomic(path, content) -> Path:
    """Write ``content`` (bytes, text as UTF-8, or a function that writes the file at the path
    it is given) to a unique temporary file beside ``path``, then rename it into place. On any
    error the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    # Unique per writer, so that concurrent writers of one path never share a temporary file;
    # hidden and in the same folder, so that the rename stays on one file system.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        if callable(content):
            content(tmp)
        else:
            tmp.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
