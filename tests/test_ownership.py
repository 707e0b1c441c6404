"""No command removes or overwrites what it did not create: every case is refused with one line
before anything changes, and the user's files are compared byte for byte before and after."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaeedof import atomic
from vaeedof.cli import main
from vaeedof.errors import VaeedofError
from vaeedof.render.split import remove_stale

from .conftest import ROOT


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder`, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _mine(folder: Path) -> Path:
    """A folder of the user's own files."""
    (folder / "holiday").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine\n")
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(folder / "holiday" / "p.jpg")
    return folder


def _refused(argv: list[str], capsys, *needles: str) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaeedof: error:"), err
    assert all(needle in err[0] for needle in needles), err[0]
    return err[0]


PARAMS = ["--params", str(ROOT / "params.yaml")]


@pytest.mark.parametrize("command", ["infer", "patches", "handheld"])
def test_out_that_is_or_holds_or_lies_inside_data_is_refused(command, tmp_path, capsys):
    data = _mine(tmp_path / "data")
    before = _snapshot(tmp_path)
    for out, data_arg in ((data, data), (data / "holiday", data), (tmp_path, data)):
        _refused([*PARAMS, command, "--data", str(data_arg), "--out", str(out)], capsys,
                 "would overwrite the input")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["infer", "patches", "handheld"])
def test_a_non_empty_folder_the_stage_did_not_write_is_refused(command, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    mine = _mine(tmp_path / "mine")
    before = _snapshot(mine)
    _refused([*PARAMS, command, "--data", str(tmp_path / "empty"), "--out", str(mine)], capsys,
             str(mine), f"not written by `vaeedof {command}`")
    assert _snapshot(mine) == before


def test_latent_cache_without_progress_does_not_remove_a_foreign_folder(tmp_path, capsys):
    mine = _mine(tmp_path / "mine")
    before = _snapshot(mine)
    _refused([*PARAMS, "latents", "--patches", str(tmp_path / "patches"), "--out", str(mine)], capsys,
             "not written by `vaeedof latents`")
    assert _snapshot(mine) == before


def test_atomic_directory_replaces_only_what_its_stage_wrote(tmp_path):
    out = tmp_path / "out"
    with atomic.atomic_directory(out, "infer") as tmp:
        (tmp / "a.txt").write_text("1")
    assert atomic.owner_of(out) == "infer"
    with atomic.atomic_directory(out, "infer") as tmp:  # its own: replaced
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [atomic.OWNER_FILE, "b.txt"]
    before = _snapshot(out)
    with pytest.raises(VaeedofError, match="not written by `vaeedof patches`"):
        with atomic.atomic_directory(out, "patches"):
            pytest.fail("the block must not run")
    assert _snapshot(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_render_split_removes_only_scene_folders_it_rendered(tmp_path):
    out = _mine(tmp_path / "train")
    stale = out / "train_00009"
    stale.mkdir()
    atomic.mark_owner(stale, "render")
    legacy = out / "train_00008"  # rendered before owner files existed: its completion record
    legacy.mkdir()
    (legacy / ".complete.json").write_text("{}")
    kept = out / "train_00001"
    kept.mkdir()
    atomic.mark_owner(kept, "render")
    mine = {k: v for k, v in _snapshot(out).items() if not k.startswith(("train_0000",))}
    remove_stale(out, {"train_00001"})
    assert sorted(p.name for p in out.iterdir()) == ["holiday", "notes.txt", "train_00001"]
    assert {k: v for k, v in _snapshot(out).items() if not k.startswith("train_0000")} == mine


def _frames(folder: Path, names: list[str], seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for name in names:
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(folder / name)
        paths.append(folder / name)
    return paths


def test_align_checks_every_output_name_before_writing(tmp_path, capsys):
    out = tmp_path / "out"
    first = _frames(tmp_path / "a", ["y.png"])[0]
    second = _frames(out, ["x.png"], seed=1)[0]  # an input inside the output folder
    before = _snapshot(tmp_path)
    _refused(["align", str(first), str(second), "-o", str(out)], capsys, "x.png",
             "would overwrite the input")
    assert _snapshot(tmp_path) == before
    same = [_frames(tmp_path / d, ["f.png"], seed=k)[0] for k, d in enumerate(("c", "d"))]
    _refused(["align", *map(str, same), "-o", str(tmp_path / "new")], capsys, "f.png",
             "would both be written")
    assert not (tmp_path / "new").exists()
    mine = _mine(tmp_path / "mine")
    before = _snapshot(mine)
    _refused(["align", str(first), str(same[0]), "-o", str(mine)], capsys, "not written by `vaeedof align`")
    assert _snapshot(mine) == before


def test_log_refuses_an_input_an_image_or_a_path_inside_an_input(tmp_path, capsys):
    frames = _frames(tmp_path / "stack", ["a.png", "b.png"])
    disguised = tmp_path / "photo.log"
    disguised.write_bytes(frames[0].read_bytes())  # an image under another name
    before = _snapshot(tmp_path)
    argv = ["fuse", *map(str, frames), "-o", str(tmp_path / "out.png")]
    _refused(["--log", str(frames[0]), *argv], capsys, "--log", "image")
    _refused(["--log", str(disguised), *argv], capsys, "is an image")
    _refused(["--log", str(tmp_path / "stack" / "run.log"), "fuse", str(tmp_path / "stack"), "-o",
              str(tmp_path / "out.png")], capsys, "reads or writes")
    assert _snapshot(tmp_path) == before


def test_folder_reading_skips_hidden_temporary_and_empty_files(tmp_path, capfd, monkeypatch):
    import vaeedof.fusion.loader as loader
    from vaeedof.fusion.engine import Fuser
    from vaeedof.nets.unet import FusionUNet

    from .synthetic import random_vae

    seen = []

    class Recording(Fuser):
        def fuse(self, images, **kwargs):
            seen.append(len(images))
            return super().fuse(images, **kwargs)

    monkeypatch.setattr(loader, "load_fuser", lambda *args, **kwargs: Recording(
        FusionUNet(16, 7, (16, 32, 64), 2), random_vae(), "cpu"))
    stack = tmp_path / "stack"
    _frames(stack, ["a.png", "b.png"])
    (stack / ".out.png.k3j2.tmp.png").write_bytes(b"")  # a killed atomic write
    (stack / "._a.png").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # a macOS resource file
    (stack / "c.png").write_bytes(b"")
    assert main(["fuse", str(stack), "-o", str(tmp_path / "fused.png"), "--align", "off"]) == 0
    assert seen == [2]
    line = next(x for x in capfd.readouterr().err.splitlines() if "skipped" in x)
    for name in (".out.png.k3j2.tmp.png (hidden)", "._a.png (hidden)", "c.png (empty)"):
        assert name in line, line
