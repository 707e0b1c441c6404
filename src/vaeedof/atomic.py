"""Atomic writes: a file or directory appears complete or not at all; and reading the JSON they
wrote back, with one clear line when it is missing or damaged.

Everything is first written next to its destination under a hidden temporary name, then renamed,
so an interrupted run never leaves a half-written artifact that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import VaeedofError

# mkstemp/mkdtemp create private (0600/0700) entries; finished artifacts get the usual modes.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it onto `dest` if the block succeeds.

    `suffix` keeps the extension for writers that pick the format from the name (Pillow).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    """Write, flush to disk, then rename: a crash or a full disk leaves the old file or none."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def write_text(dest: str | os.PathLike, text: str) -> None:
    write_bytes(dest, text.encode("utf-8"))


def write_json(dest: str | os.PathLike, obj) -> None:
    """Canonical JSON (sorted keys, fixed separators) so equal content gives equal bytes."""
    write_text(dest, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(dest: str | os.PathLike, rows: list[dict], fieldnames: list[str] | None = None) -> None:
    """Rows of dicts as CSV (header from the first row unless given; None written empty)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames or list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_text(dest, buffer.getvalue())


def save_image(image, dest: str | os.PathLike, **save_kwargs) -> None:
    """Save a PIL image atomically; the format follows the destination's extension."""
    dest = Path(dest)
    with atomic_path(dest, suffix=dest.suffix) as tmp:
        image.save(tmp, **save_kwargs)


@contextlib.contextmanager
def atomic_directory(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory; it replaces `dest` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, DIR_MODE)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_json(path: str | os.PathLike, missing_hint: str):
    """Parse a JSON file; a missing file says what produces it (`missing_hint`)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise VaeedofError(f"{path}: not found ({missing_hint})") from None
    except json.JSONDecodeError as exc:
        raise VaeedofError(f"{path}: not valid JSON ({exc})") from None
