import io
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from vaeedof.assets import local
from vaeedof.assets.archives import extract
from vaeedof.errors import VaeedofError


def _png(mode="RGBA", size=(80, 80)) -> bytes:
    array = np.random.default_rng(0).integers(0, 255, (size[1], size[0], len(mode)), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array.squeeze(), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _tar(path, members):
    with tarfile.open(path, "w:gz") as bundle:
        for member, data in members:
            if data is not None:
                member.size = len(data)
            bundle.addfile(member, io.BytesIO(data) if data is not None else None)


def test_safe_zip_extracts(tmp_path):
    archive = tmp_path / "ok.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("subjects/a.png", _png())
    out = extract(archive, tmp_path / "out", max_bytes=10**6)
    assert (out / "subjects/a.png").exists()


@pytest.mark.parametrize("name", ["../evil.png", "/etc/evil.png", "a/../../evil.png"])
def test_zip_path_escape_refused(tmp_path, name):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr(name, b"x")
    with pytest.raises(VaeedofError, match="refused"):
        extract(archive, tmp_path / "out", max_bytes=10**6)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.png").exists()


def test_tar_symlink_and_escape_refused(tmp_path):
    link = tarfile.TarInfo("link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    _tar(tmp_path / "link.tgz", [(link, None)])
    with pytest.raises(VaeedofError, match="is a link"):
        extract(tmp_path / "link.tgz", tmp_path / "o1", max_bytes=10**6)
    _tar(tmp_path / "dots.tgz", [(tarfile.TarInfo("../x"), b"x")])
    with pytest.raises(VaeedofError, match="escapes"):
        extract(tmp_path / "dots.tgz", tmp_path / "o2", max_bytes=10**6)


def test_archive_size_bound(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("zeros.bin", b"\0" * 5_000_000)
    assert archive.stat().st_size < 100_000
    with pytest.raises(VaeedofError, match="size bound"):
        extract(archive, tmp_path / "out", max_bytes=1_000_000)
    assert not (tmp_path / "out").exists()


def test_subjects_without_alpha_rejected(tmp_path):
    folder = tmp_path / "subjects"
    folder.mkdir()
    (folder / "person.jpg").write_bytes(_png("RGB"))
    with pytest.raises(VaeedofError, match="person.jpg: subject image has no alpha"):
        local.index_subjects(str(folder), "train", tmp_path / "res", 16, 10**6)


def test_foreground_alpha_pairs_composed(tmp_path):
    root = tmp_path / "am2k"
    (root / "original").mkdir(parents=True)
    (root / "mask").mkdir()
    (root / "original/cat.png").write_bytes(_png("RGB"))
    (root / "mask/cat.png").write_bytes(_png("L"))
    entries = local.index_subjects(str(root), "test", tmp_path / "res", 16, 10**6)
    assert len(entries) == 1
    image = Image.open(entries[0]["path"])
    assert image.mode == "RGBA" and image.size == (80, 80)


def test_subjects_from_archive_and_size_check(tmp_path):
    archive = tmp_path / "d646.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("fg/a.png", _png("RGBA"))
    entries = local.index_subjects(str(archive), "train", tmp_path / "res", 16, 10**6)
    assert entries[0]["width"] == 80
    with pytest.raises(VaeedofError, match="smaller than 100 px"):
        local.index_subjects(str(archive), "train", tmp_path / "res", 100, 10**6)


def test_backgrounds_too_small_skipped(tmp_path):
    folder = tmp_path / "bg"
    folder.mkdir()
    (folder / "small.png").write_bytes(_png("RGB", (40, 40)))
    (folder / "big.png").write_bytes(_png("RGB", (80, 80)))
    entries = local.index_backgrounds(str(folder), "train", tmp_path / "res", 64, 10**6)
    assert [e["id"] for e in entries] == ["local/train/big"]


def test_corrupt_image_named(tmp_path):
    folder = tmp_path / "bg"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(VaeedofError, match="broken.png: unreadable image"):
        local.index_backgrounds(str(folder), "train", tmp_path / "res", 8, 10**6)
