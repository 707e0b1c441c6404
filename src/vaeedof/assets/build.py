"""The `assets` stage: gather subjects, backgrounds and HDRIs from their configured sources into
one verified index (resources/assets/index.json) that scene sampling and rendering read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import VaeedofError
from ..hashing import sha256_file, sha256_json
from ..logs import get_logger, progress
from . import local, photographic, procedural
from .fetch import resolve
from .hdr import write_hdr
from .registry import PHOTOS, REAL_HDRIS, lookup

SPLITS = ("train", "test")
_ROLE_CODES = {"subject": 1, "background": 2, "hdri": 3}


def _rng(seed: int, role: str, split: str, index: int) -> np.random.Generator:
    # Separate streams per role and split: train and test never share a generated asset.
    return np.random.default_rng([seed, 1000 + _ROLE_CODES[role], SPLITS.index(split), index])


def _entry(asset_id: str, path: Path, width: int, height: int) -> dict:
    return {"id": asset_id, "path": str(path), "sha256": sha256_file(path),
            "width": width, "height": height}


def _procedural_images(params: dict, role: str, split: str, out: Path) -> list[dict]:
    cfg = params["assets"]["procedural"]
    if role == "subject":
        count, size, make = cfg[f"subjects_{split}"], cfg["subject_size"], procedural.subject_image
    else:
        count = cfg[f"backgrounds_{split}"]
        size = max(params["render"]["resolution"], 64)
        make = procedural.background_image
    entries = []
    for index in progress(range(count), desc=f"{role}s/{split}"):
        path = out / f"{role}s" / split / f"{role}_{index:04d}.png"
        image = make(_rng(params["seed"], role, split, index), size)
        atomic.write_pil_image(image, path)
        entries.append(_entry(f"procedural/{split}/{role}_{index:04d}", path, *image.size))
    return entries


def _procedural_hdris(params: dict, out: Path) -> list[dict]:
    cfg = params["assets"]["procedural"]
    entries = []
    for index in range(cfg["hdris"]):
        path = out / "hdris" / f"hdri_{index:04d}.hdr"
        env = procedural.hdri(_rng(params["seed"], "hdri", "train", index), cfg["hdri_width"])
        write_hdr(path, env)
        entries.append(_entry(f"procedural/hdri_{index:04d}", path, env.shape[1], env.shape[0]))
    return entries


def _local_pool(params: dict, role: str, resources_dir: Path) -> dict[str, list[dict]]:
    cfg = params["assets"]["local"]
    max_bytes = int(cfg["max_archive_mb"] * 1e6)
    pools = {}
    for split in SPLITS:
        source = cfg[f"{role}s_{split}"]
        if not source:
            raise VaeedofError(
                f"params.yaml: key 'assets.local.{role}s_{split}': needed when "
                f"assets.{role}s is 'local' (a folder or archive of the dataset)"
            )
        if role == "subject":
            pools[split] = local.index_subjects(source, split, resources_dir,
                                                cfg["min_subject_size"], max_bytes)
        else:
            pools[split] = local.index_backgrounds(source, split, resources_dir,
                                                   params["render"]["resolution"], max_bytes)
    return pools


def _downloaded_hdris(params: dict, resources_dir: Path) -> list[dict]:
    names = params["assets"]["download"]["hdris"]
    if not names:
        raise VaeedofError("params.yaml: key 'assets.download.hdris': empty while "
                           "assets.hdris is 'download'")
    return _registered_hdris([lookup(name) for name in names], params, resources_dir)


def _registered_hdris(assets: list, params: dict, resources_dir: Path) -> list[dict]:
    """Index entries of registered HDRIs, each verified (credited when its licence asks)."""
    entries = []
    for asset in progress(assets, desc="HDRIs"):
        path = resolve(asset, resources_dir, params["assets"]["mirrors"])
        credit = {"credit": f"{asset.credit}, {asset.license}"} if asset.credit else {}
        entries.append({"id": asset.name, "path": str(path), "sha256": sha256_file(path),
                        "width": 0, "height": 0, **credit})
    return entries


def _photographic_pools(params: dict, resources_dir: Path, out: Path) -> dict:
    """Subject and/or background pools cut from the registered photographs, split by photograph."""
    roles = tuple(role for role in ("subject", "background")
                  if params["assets"][f"{role}s"] == "photographic")
    pools = photographic.split_photos(PHOTOS, params["assets"]["photographic"]["test_photos"])
    paths = {photo.name: resolve(photo, resources_dir, params["assets"]["mirrors"])
             for photo in progress(PHOTOS, desc="photographs")}
    made = {split: photographic.make_assets(params, pools[split], paths, split, out, roles)
            for split in SPLITS}
    return {f"{role}s": {split: made[split][f"{role}s"] for split in SPLITS} for role in roles}


def check_disjoint(index: dict) -> None:
    """Train and test subject pools must share no image (the paper tests on unseen subjects)."""
    train = {entry["sha256"]: entry["path"] for entry in index["subjects"]["train"]}
    for entry in index["subjects"]["test"]:
        if entry["sha256"] in train:
            raise VaeedofError(f"{entry['path']}: test subject identical to train subject "
                               f"{train[entry['sha256']]}; subject pools must be disjoint")


def used_settings(assets: dict) -> dict:
    """The asset parameters the assets depend on: the sources, and the settings section of each
    source in use (a section of an unused source changes nothing). Mirrors and pins only say where
    verified files come from."""
    sources = {assets[k] for k in ("subjects", "backgrounds", "hdris")}
    return {k: v for k, v in assets.items()
            if k in ("subjects", "backgrounds", "hdris") or k in sources}


def _settings(params: dict) -> dict:
    """The parameters the asset index depends on (its fingerprint)."""
    return {"seed": params["seed"], "assets": used_settings(params["assets"]),
            "resolution": params["render"]["resolution"]}


def index_is_current(index_path: Path, params: dict) -> bool:
    """True when the index was built from these parameters and every file still verifies."""
    if not index_path.exists():
        return False
    index = json.loads(index_path.read_text())
    if index.get("fingerprint") != sha256_json(_settings(params)):
        return False
    entries = index["subjects"]["train"] + index["subjects"]["test"] + index["hdris"]
    entries += index["backgrounds"]["train"] + index["backgrounds"]["test"]
    return all(Path(e["path"]).is_file() and sha256_file(e["path"]) == e["sha256"] for e in entries)


def build(params: dict, resources_dir: str | os.PathLike = "resources") -> Path:
    """Build (or confirm) resources/assets/index.json; return its path."""
    log = get_logger()
    resources_dir = Path(resources_dir)
    out = resources_dir / "assets"
    index_path = out / "index.json"
    if index_is_current(index_path, params):
        log.info("%s: up to date, every asset verified", index_path)
        return index_path
    sources = params["assets"]
    index: dict = {"subjects": {}, "backgrounds": {}}
    if "photographic" in (sources["subjects"], sources["backgrounds"]):
        index.update(_photographic_pools(params, resources_dir, out))
    for role in ("subject", "background"):
        if sources[f"{role}s"] == "procedural":
            index[f"{role}s"] = {s: _procedural_images(params, role, s, out) for s in SPLITS}
        elif sources[f"{role}s"] == "local":
            index[f"{role}s"] = _local_pool(params, role, resources_dir)
    if sources["hdris"] == "procedural":
        index["hdris"] = _procedural_hdris(params, out)
    elif sources["hdris"] == "photographic":
        index["hdris"] = _registered_hdris(REAL_HDRIS, params, resources_dir)
    else:
        index["hdris"] = _downloaded_hdris(params, resources_dir)
    check_disjoint(index)
    index["sources"] = {k: sources[k] for k in ("subjects", "backgrounds", "hdris")}
    index["fingerprint"] = sha256_json(_settings(params))
    atomic.write_json(index_path, index)
    counts = {role: {s: len(index[role][s]) for s in SPLITS} for role in ("subjects", "backgrounds")}
    log.info("asset index %s: %s, %d HDRIs", index_path, counts, len(index["hdris"]))
    return index_path


def load_index(path: str | os.PathLike) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise VaeedofError(f"{path}: asset index not found (run `vaeedof assets` first)") from None
