"""What a report was made from: the git commit of the code, the data version of the test set
(its content hash, and DVC's hash of it when dvc.lock records one), the checkpoint checksum."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from .hashing import sha256_file, sha256_json


def git_commit() -> str:
    """HEAD, with '-dirty' when tracked files differ from it; 'unknown' outside a repository."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def content_hash(folder: str | os.PathLike) -> str:
    """sha256 over every file's relative path and sha256 (hidden files and folders skipped)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return sha256_json([[str(p.relative_to(folder)), sha256_file(p)] for p in files])


def dvc_recorded_hash(path: str | os.PathLike, lock: str | os.PathLike = "dvc.lock") -> str | None:
    """The md5 dvc.lock records for an output path (as of the last `dvc repro`/`dvc commit`)."""
    lock = Path(lock)
    if not lock.exists():
        return None
    wanted = os.path.normpath(str(path))
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    for stage in stages.values():
        for out in stage.get("outs", []):
            if os.path.normpath(out.get("path", "")) == wanted:
                return out.get("md5")
    return None


def data_version(data_dir: str | os.PathLike) -> dict:
    return {"path": str(data_dir), "sha256": content_hash(data_dir),
            "dvc_lock_md5": dvc_recorded_hash(data_dir)}
