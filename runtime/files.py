"""Atomic writes: a file appears at its path complete or not at all, and only a regular file
(or nothing) is ever replaced. A symlink is written through: its target is replaced, the link
stays."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from runtime.errors import InputError, OutputError


@contextlib.contextmanager
def atomic_path(dest: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success rename it over `dest`, else delete it.

    A full disk, a read-only folder or a parent that is not a folder becomes an OutputError
    naming `dest`; whatever was at `dest` before is left as it was.
    """
    dest = writable_target(dest)
    _remove_stale_temporaries(dest)
    try:
        # Same folder (rename stays atomic) and same suffix (writers that check it are happy);
        # the pid in the name tells a later run whether the writer is still alive.
        fd, name = tempfile.mkstemp(
            prefix=f"{_temporary_prefix(dest)}{os.getpid()}-", suffix=dest.suffix, dir=dest.parent
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


def _temporary_prefix(dest: Path) -> str:
    return f".{dest.name}.tmp-"


def _remove_stale_temporaries(dest: Path) -> None:
    """Remove the temporaries of `dest` that a run of ours killed mid-write left behind: files
    of our naming whose writing process is gone."""
    prefix = _temporary_prefix(dest)
    try:
        names = [n for n in os.listdir(dest.parent) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix) :].split("-", 1)[0]
        path = dest.parent / name
        if pid.isdigit() and not _alive(int(pid)) and path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def writable_target(dest: Path | str) -> Path:
    """The file a write to `dest` replaces: `dest`, or a symlink's final target. Anything that
    exists and is not a regular file (a device, a FIFO, a folder, a socket) is refused."""
    dest = Path(dest)
    for folder in (dest.parent, *dest.parent.parents):  # the nearest one that exists
        if folder.exists():
            if not folder.is_dir():
                raise OutputError(f"{dest}: cannot write ({folder} is not a folder)")
            break
    if dest.is_symlink():
        dest = dest.resolve()
    try:
        mode = dest.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise OutputError(f"{dest}: cannot write ({e.strerror})") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputError(f"{dest}: expected a regular file to write, found {_kind(mode)}")
    return dest


def check_regular_file(path: Path, error: type[Exception] = InputError) -> None:
    """Refuse what is not a regular file before opening it (a FIFO would block forever), as
    `error` (InputError for inputs, DataError for the data set)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise error(f"{path}: expected a file, found a folder")
    if not stat.S_ISREG(mode):
        raise error(f"{path}: expected a regular file, found a device, FIFO or socket")


def make_parent(dest: Path) -> None:
    """Create the folder a file will be written into, or say in one line why not."""
    writable_target(dest)
    try:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{dest}: cannot create its folder ({e.strerror or e})") from None


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "something other than a file")


def write_json(dest: Path | str, payload: object) -> None:
    """Write `payload` as indented JSON, atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_csv(dest: Path | str, rows: list[dict]) -> None:
    """Write `rows` (dicts with the same keys) as CSV with a header, atomically."""
    with atomic_path(dest) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
