"""Resolve a registered asset to a verified local file: resources/ first, then mirror folders,
then the network. Every file is verified against its pinned checksum before use, and what was
used is recorded in a manifest."""

from __future__ import annotations

import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from .. import atomic
from ..errors import VaeedofError
from ..hashing import git_blob_id, sha256_file
from ..logs import get_logger
from .manifest import Manifest
from .registry import RemoteAsset

MIRROR_ENV = "VAEEDOF_ASSET_MIRROR"


def default_resources_dir() -> str:
    """Where verified downloads go: `resources/` in a project folder (one with params.yaml or
    resources/), elsewhere the user's cache ($XDG_CACHE_HOME/vaeedof, else ~/.cache/vaeedof), so
    `vaeedof fuse` run from any folder leaves nothing there but its output."""
    if Path("params.yaml").exists() or Path("resources").is_dir():
        return "resources"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(cache) / "vaeedof")


def mirror_folders(extra: list[str] | None = None) -> list[Path]:
    """Mirror folders: VAEEDOF_ASSET_MIRROR (os.pathsep-separated) first, then `extra`."""
    folders = [p for p in os.environ.get(MIRROR_ENV, "").split(os.pathsep) if p]
    folders += list(extra or [])
    return [Path(folder).expanduser() for folder in folders]


def verify(asset: RemoteAsset, path: Path) -> str | None:
    """Return None when `path` matches the pinned checksums, else a description of the mismatch."""
    if asset.sha256:
        actual = sha256_file(path)
        if actual != asset.sha256:
            return f"sha256 {actual} != pinned {asset.sha256}"
    if asset.git_blob:
        actual = git_blob_id(path)
        if actual != asset.git_blob:
            return f"git blob id {actual} != pinned {asset.git_blob}"
    return None


def _download(url: str, dest: Path, retries: int = 3, timeout: float = 60.0) -> None:
    """Stream `url` into `dest` atomically; a partial download never takes the final name."""
    log = get_logger()
    for attempt in range(1, retries + 1):
        try:
            with atomic.atomic_path(dest) as tmp:
                with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                    expected = response.headers.get("Content-Length")
                    shutil.copyfileobj(response, out, length=1 << 20)
                if expected is not None and tmp.stat().st_size != int(expected):
                    raise OSError(f"got {tmp.stat().st_size} of {expected} bytes")
            return
        except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
            if attempt == retries:
                raise VaeedofError(f"{url}: download failed ({exc})") from None
            log.warning("%s: download attempt %d failed (%s); retrying", url, attempt, exc)
            time.sleep(min(2**attempt, 10))


def resolve(asset: RemoteAsset, resources_dir: str | os.PathLike = "resources",
            mirrors: list[str] | None = None, allow_download: bool = True) -> Path:
    """A verified local copy of `asset` under resources_dir/downloads/, fetched at most once."""
    if not asset.pinned:
        raise VaeedofError(
            f"asset '{asset.name}': no pinned checksum; run `vaeedof assets pin {asset.name}` "
            "on a connected machine and add the printed sha256 under assets.pins in params.yaml"
        )
    log = get_logger()
    downloads = Path(resources_dir) / "downloads"
    dest = downloads / asset.filename
    manifest = Manifest(downloads / "manifest.json")
    if dest.exists():
        problem = verify(asset, dest)
        if problem is None:
            return dest
        log.warning("%s: cached copy fails verification (%s); fetching again", dest, problem)
        dest.unlink()
    source = None
    for folder in mirror_folders(mirrors):
        candidate = folder / asset.filename
        if candidate.is_file():
            problem = verify(asset, candidate)
            if problem is None:
                with atomic.atomic_path(dest) as tmp:
                    shutil.copyfile(candidate, tmp)
                source = candidate.resolve().as_uri()
                break
            log.warning("%s: mirror copy fails verification (%s); skipped", candidate, problem)
    if source is None:
        if not allow_download:
            raise VaeedofError(f"asset '{asset.name}': not in any mirror and downloads are off")
        log.info("downloading %s", asset.url)
        _download(asset.url, dest)
        source = asset.url
    problem = verify(asset, dest)
    if problem is not None:
        dest.unlink()
        raise VaeedofError(f"{source}: checksum mismatch for '{asset.name}' ({problem}); deleted")
    manifest.record(asset.name, {
        "file": str(dest),
        "source": source,
        "url": asset.url,
        "sha256": sha256_file(dest),
        "license": asset.license,
    })
    return dest


def pin(asset: RemoteAsset, resources_dir: str | os.PathLike = "resources") -> str:
    """Download an unpinned asset once and return its sha256 (trust on first use, by a human)."""
    dest = Path(resources_dir) / "downloads" / "unverified" / asset.filename
    _download(asset.url, dest)
    return sha256_file(dest)


def torch_hub_dir() -> Path:
    """Where pyiqa and torchvision look for learned metrics' weights."""
    return Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub"


def install_metric_weights(asset: RemoteAsset, path: Path) -> Path:
    """Copy verified learned-metric weights where pyiqa/torchvision look for them (the torch hub
    cache), so the evaluation finds them without a download."""
    target = torch_hub_dir() / asset.kind.split(":", 1)[1] / asset.filename
    with atomic.atomic_path(target) as tmp:
        shutil.copyfile(path, tmp)
    return target
