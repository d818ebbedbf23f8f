"""Files written whole or not at all: a reader (Nginx, a download) sees the old file or the new
one, never a half-written one, and a crash leaves no torn file under the final name."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import TextIO


def file_temporary_path(*, path: Path) -> Path:
    """Where file_write_atomic writes `path` first: hidden, beside it (the same filesystem, so
    the rename is atomic)."""
    return path.with_name(f".{path.name}.tmp")


def file_leftovers_remove(*, directory: Path) -> None:
    """Deletes the temporaries that writes into `directory` left when they stopped midway (an
    exception, a killed process). Only for a directory no other write is using right now."""
    for leftover in directory.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def file_write_atomic[T](*, path: Path, write: Callable[[TextIO], T], mode: int = 0o644) -> T:
    """Calls `write` with a text file (UTF-8, newlines as written), then puts it at `path`.

    The temporary is fsynced, given `mode`, renamed over `path`, and the directory is fsynced.
    Returns what `write` returns. Should `write` raise, the temporary stays behind (a killed
    process leaves one too): file_leftovers_remove clears them.
    """
    temporary = file_temporary_path(path=path)
    with temporary.open("w", newline="", encoding="utf-8") as out:
        result = write(out)
        out.flush()
        os.fsync(out.fileno())
    temporary.chmod(mode)
    os.replace(temporary, path)
    # The rename itself survives a crash only once the directory is synced too.
    descriptor = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return result
