"""Safe extraction of user-supplied archives (.zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz):
no absolute paths, no `..`, no links or special files, a bound on the expanded size."""

from __future__ import annotations

import lzma
import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from .. import atomic
from ..errors import VaeedofError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


# What damaged archive data raises while it is read (a size or checksum that lies, a cut-off
# stream); errors writing the extracted files stay OSErrors naming those files.
DAMAGE = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _check_name(archive: Path, name: str) -> PurePosixPath:
    member = PurePosixPath(name.replace("\\", "/"))
    if member.is_absolute() or (member.parts and member.parts[0].endswith(":")):
        raise VaeedofError(f"{archive}: refused, member '{name}' has an absolute path")
    if ".." in member.parts:
        raise VaeedofError(f"{archive}: refused, member '{name}' escapes with '..'")
    return member


def _place(target: Path, is_dir: bool, open_member, budget: list[int], archive: Path,
           name: str) -> None:
    """Create a checked member's folder, or copy its bytes while counting them against the
    bound (declared sizes can lie)."""
    if is_dir:
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with open_member() as source, open(target, "wb") as out:
        for chunk in _chunks(source, archive, name):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise VaeedofError(f"{archive}: refused, expands beyond the size bound at '{name}'")
            out.write(chunk)


def _chunks(source, archive: Path, name: str) -> Iterator[bytes]:
    """A member's bytes; a read error is the archive's damage (gzip and bz2 raise OSError)."""
    while True:
        try:
            chunk = source.read(1 << 20)
        except (OSError, *DAMAGE) as exc:
            raise VaeedofError(f"{archive}: damaged archive at '{name}' ({exc})") from None
        if not chunk:
            return
        yield chunk


EXTRACT_STAGE = "assets"  # the owner of the folders archives are extracted to (atomic.OWNER_FILE)


def extract(archive: Path, dest: Path, max_bytes: int) -> Path:
    """Extract `archive` into `dest` (atomically: all or nothing) and return `dest`."""
    budget = [max_bytes]
    with atomic.atomic_directory(dest, EXTRACT_STAGE, [archive]) as tmp:
        try:
            if archive.name.lower().endswith(".zip"):
                _extract_zip(archive, tmp, budget)
            else:
                _extract_tar(archive, tmp, budget)
        except DAMAGE as exc:
            raise VaeedofError(f"{archive}: damaged archive ({exc or type(exc).__name__})") from None
    return dest


def _extract_zip(archive: Path, out: Path, budget: list[int]) -> None:
    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise VaeedofError(f"{archive}: not a readable zip archive ({exc})") from None
    with bundle:
        infos = bundle.infolist()
        if sum(info.file_size for info in infos) > budget[0]:
            raise VaeedofError(f"{archive}: refused, declared size exceeds the size bound")
        for info in infos:
            member = _check_name(archive, info.filename)
            mode = (info.external_attr >> 16) & 0o170000
            if mode and mode not in (0o100000, 0o040000):
                raise VaeedofError(f"{archive}: refused, member '{info.filename}' is a link")
            _place(out.joinpath(*member.parts), info.is_dir(), lambda i=info: bundle.open(i),
                   budget, archive, info.filename)


def _extract_tar(archive: Path, out: Path, budget: list[int]) -> None:
    try:
        bundle = tarfile.open(archive)
    except (tarfile.TarError, OSError) as exc:
        raise VaeedofError(f"{archive}: not a readable tar archive ({exc})") from None
    with bundle:
        members = bundle.getmembers()
        if sum(m.size for m in members if m.isfile()) > budget[0]:
            raise VaeedofError(f"{archive}: refused, declared size exceeds the size bound")
        for member in members:
            name = _check_name(archive, member.name)
            if member.issym() or member.islnk():
                raise VaeedofError(f"{archive}: refused, member '{member.name}' is a link")
            if not (member.isfile() or member.isdir()):
                raise VaeedofError(f"{archive}: refused, member '{member.name}' is a special file")
            _place(out.joinpath(*name.parts), member.isdir(), lambda m=member: bundle.extractfile(m),
                   budget, archive, member.name)


def walk_files(root: Path) -> list[Path]:
    """Regular files below root, sorted, skipping hidden files and symlinks."""
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(folder) / name
            if not name.startswith(".") and path.is_file() and not path.is_symlink():
                files.append(path)
    return files
