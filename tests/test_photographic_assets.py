"""Photographic subjects and backgrounds: from registered, checksummed photographs through the
asset layer, split by photograph, sharp crops, credits carried into every scene."""

import copy
import hashlib
import subprocess

import numpy as np
import pytest
from PIL import Image

from vaeedof import params as params_mod
from vaeedof.assets import build, photographic, registry
from vaeedof.errors import VaeedofError
from vaeedof.scenes import sample_scene

from .conftest import SHARED_MIRROR, tiny_params


def _photo(path, seed, blurred_half=False):
    rng = np.random.default_rng(seed)
    rgb = (rng.uniform(0, 255, (300, 400, 3))).astype(np.uint8)
    if blurred_half:
        rgb[:, :200] = np.asarray(Image.fromarray(rgb[:, :200]).resize((20, 30)).resize((200, 300)))
    Image.fromarray(rgb).save(path, quality=92)
    return path


@pytest.fixture
def photo_mirror(tmp_path, monkeypatch):
    """Four registered photographs served by a mirror folder, with their real sha256."""
    mirror = tmp_path / "mirror"
    (mirror / "photos").mkdir(parents=True)
    assets = []
    for index in range(4):
        path = _photo(mirror / "photos" / f"p{index}.jpg", index)
        assets.append(registry.RemoteAsset(
            name=f"photo/p{index}", filename=f"photos/p{index}.jpg", url="http://127.0.0.1:9/none",
            kind="photo", sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            license="test licence", credit=f"Photo {index} by someone"))
    monkeypatch.setattr(build, "PHOTOS", assets)
    monkeypatch.setenv("VAEEDOF_ASSET_MIRROR", str(mirror))
    return assets


def _photographic_params(**photographic):
    raw = copy.deepcopy(tiny_params())
    raw["assets"].update(subjects="photographic", backgrounds="photographic")
    settings = {"test_photos": ["p3"], "subjects_per_photo": 2, "backgrounds_per_photo": 1,
                "subject_size": 32, **photographic}
    raw["assets"]["photographic"].update(settings)
    return params_mod.validate(raw)


def test_pools_disjoint_by_photograph_and_credited(tmp_path, monkeypatch, photo_mirror):
    monkeypatch.chdir(tmp_path)
    params = _photographic_params()
    index = build.load_index(build.build(params, "resources"))
    assert len(index["subjects"]["train"]) == 6 and len(index["subjects"]["test"]) == 2
    assert len(index["backgrounds"]["train"]) == 3 and len(index["backgrounds"]["test"]) == 1
    assert all("/p3_" in e["path"] for e in index["subjects"]["test"] + index["backgrounds"]["test"])
    assert not any("/p3_" in e["path"] for e in index["subjects"]["train"])
    subject = Image.open(index["subjects"]["train"][0]["path"])
    assert subject.mode == "RGBA" and subject.size == (32, 32)
    alpha = np.asarray(subject)[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255  # a matte: cut out, with an opaque interior
    scene = sample_scene(params, "test", 0, index)
    assert all(plane["credit"].startswith("Photo 3 by someone") for plane in scene["planes"])
    # Rebuilding with the same parameters verifies and keeps every file.
    assert build.index_is_current(tmp_path / "resources/assets/index.json", params)


def test_unknown_held_out_photograph_named(tmp_path, monkeypatch, photo_mirror):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VaeedofError, match="test_photos': unknown photograph 'nope'"):
        build.build(_photographic_params(test_photos=["nope"]), "resources")


def test_tampered_photograph_refused(tmp_path, monkeypatch, photo_mirror, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("vaeedof.assets.fetch.time.sleep", lambda seconds: None)
    _photo(tmp_path / "mirror/photos/p1.jpg", 99)  # same name, other bytes
    with pytest.raises(VaeedofError, match="download failed"):
        build.build(_photographic_params(), "resources")
    assert "mirror/photos/p1.jpg: mirror copy fails verification" in caplog.text


def test_sharpest_crop_avoids_the_blurred_part(tmp_path):
    photo = Image.open(_photo(tmp_path / "half.jpg", 5, blurred_half=True))
    rng = np.random.default_rng(0)
    picks = []
    for _ in range(10):
        crop = photographic.sharpest_crop(photo, rng, [0.3, 0.4], 32, candidates=6)
        picks.append(photographic.sharpness(crop))
    blurred = np.asarray(photo.crop((0, 0, 100, 100)).resize((32, 32)))
    assert min(picks) > 2 * photographic.sharpness(blurred)


@pytest.mark.skipif(not (SHARED_MIRROR / "photos").is_dir(), reason="no asset mirror beside the project")
@pytest.mark.parametrize("catalog", [registry.PHOTOS, registry.REAL_HDRIS], ids=["photos", "hdris"])
def test_catalog_matches_the_mirror(catalog):
    """Every registered photograph and HDRI verifies against its sha256 and upstream git blob."""
    from vaeedof.assets.fetch import verify

    assert len(catalog) == 30
    for asset in catalog:
        path = SHARED_MIRROR / asset.filename
        assert verify(asset, path) is None, asset.name
    blob = subprocess.run(["git", "hash-object", str(SHARED_MIRROR / catalog[0].filename)],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert blob == catalog[0].git_blob
