"""Atomic writes: a file appears at its path complete or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from runtime.errors import OutputError


@contextlib.contextmanager
def atomic_path(dest: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success rename it over `dest`, else delete it.

    A full disk, a read-only folder or a parent that is not a folder becomes an OutputError
    naming `dest`; whatever was at `dest` before is left as it was.
    """
    dest = Path(dest)
    try:
        # Same folder (rename stays atomic) and same suffix (writers that check it are happy).
        fd, name = tempfile.mkstemp(
            prefix=f".{dest.name}.tmp-", suffix=dest.suffix, dir=dest.parent
        )
    except OSError as e:
        raise OutputError(f"{dest}: cannot write ({e.strerror})") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, dest)
    except OSError as e:
        raise OutputError(f"{dest}: cannot write ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_json(dest: Path | str, payload: object) -> None:
    """Write `payload` as indented JSON, atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
