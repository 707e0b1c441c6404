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
from collections.abc import Iterable, Iterator
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
    tmp_path = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=dest.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, dest)
    except OSError as exc:  # a full disk, a read-only folder: named by the user's path, not ours
        if exc.filename in (None, tmp_path and str(tmp_path), str(dest.parent)):
            raise OSError(exc.errno, exc.strerror or str(exc), str(dest)) from exc
        raise
    finally:
        if tmp_path is not None and tmp_path.exists():
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


def write_pil_image(image, dest: str | os.PathLike, **save_kwargs) -> None:
    """Save a PIL image atomically; the format follows the destination's extension."""
    dest = Path(dest)
    with atomic_path(dest, suffix=dest.suffix) as tmp:
        image.save(tmp, **save_kwargs)


OWNER_FILE = ".vaeedof-owner"  # inside every folder a stage writes: which stage may replace it


def owner_of(folder: Path) -> str | None:
    """The stage that wrote `folder` (its OWNER_FILE), or None."""
    try:
        return json.loads((folder / OWNER_FILE).read_text()).get("stage")
    except (OSError, ValueError, AttributeError):
        return None


def check_replaceable(dest: Path, stage: str, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """One line, before anything is written, when replacing `dest` could destroy what `stage` did
    not write: `dest` is, holds or lies inside one of its inputs, or is a non-empty folder
    without this stage's OWNER_FILE."""
    resolved = dest.resolve()
    for source in inputs:
        source = Path(source).resolve()
        if resolved == source or source in resolved.parents or resolved in source.parents:
            raise VaeedofError(f"{dest}: refused as the output folder, it would overwrite the input {source}")
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise VaeedofError(f"{dest}: exists and is not a folder; choose another output folder")
    if dest.is_dir() and any(dest.iterdir()) and owner_of(dest) != stage:
        raise VaeedofError(f"{dest}: not empty and not written by `vaeedof {stage}` (no {OWNER_FILE} of "
                           "its inside); choose another output folder or empty this one yourself")


def mark_owner(folder: Path, stage: str) -> None:
    write_json(folder / OWNER_FILE, {"stage": stage})


@contextlib.contextmanager
def atomic_directory(dest: str | os.PathLike, stage: str, inputs: Iterable[str | os.PathLike] = ()
                     ) -> Iterator[Path]:
    """Yield an empty temporary directory; it replaces `dest` only if the block succeeds. `stage`
    owns the result (OWNER_FILE); an existing `dest` is replaced only when `stage` wrote it, and
    never when it is, holds or lies inside one of `inputs` (`check_replaceable`, before the block)."""
    dest = Path(dest)
    check_replaceable(dest, stage, inputs)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        mark_owner(tmp, stage)
        yield tmp
        os.chmod(tmp, DIR_MODE)
        check_replaceable(dest, stage)  # still ours: nothing else appeared there meanwhile
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
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VaeedofError(f"{path}: not valid JSON ({exc})") from None
