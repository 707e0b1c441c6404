"""Bad input of every kind: one line on stderr naming the file or flag, a non-zero exit, no
traceback and nothing written at the output path (docs/reliability.md, "Bad input")."""

import io
import json
import os
import resource
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaeedof import atomic
from vaeedof.cli import main
from vaeedof.errors import VaeedofError

from .conftest import ROOT
from .synthetic import export_tiny_checkpoint, png_declaring

# A cap on the address space of probes that would allocate much without their checks (torch's
# libraries alone map about 4 GB).
MEMORY_CAP = 6 * 1024**3


def _png(path: Path, size=(64, 48), seed=0) -> str:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return str(path)


def _corrupt_jpeg(path: Path) -> str:
    """A JPEG whose scan data has bytes changed (not cut off): libjpeg decodes it with garbage
    bands and only warns "Corrupt JPEG data"."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(path, quality=90)
    data = bytearray(path.read_bytes())
    scan = data.find(b"\xff\xda") + 200
    for at in range(scan, scan + 37 * 10, 37):  # Pillow decodes it without a word too
        data[at] = 0x12 if data[at] == 0xFF else (data[at] + 91) % 255
    path.write_bytes(bytes(data))
    return str(path)


def _corrupt_png(path: Path) -> str:
    _png(path)
    data = bytearray(path.read_bytes())
    pixels = data.find(b"IDAT") + 100
    for at in range(pixels, pixels + 300, 13):
        data[at] ^= 0x55
    path.write_bytes(bytes(data))
    return str(path)


def _one_line(capsys, code: int, *expected: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert all(text in err[0] for text in expected), err
    return err[0]


def _run_capped(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`vaeedof ARGS` in a child process whose address space is capped at MEMORY_CAP."""
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([sys.executable, "-m", "vaeedof.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, preexec_fn=cap, timeout=300)


# ---------------------------------------------------------------------------------------------
# Decoding: damaged data is an error, never garbage output
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damaged", [_corrupt_jpeg, _corrupt_png], ids=["jpeg", "png"])
def test_damaged_image_data_stops_with_the_file_named(tmp_path, capsys, damaged):
    bad = damaged(tmp_path / ("bad.jpg" if damaged is _corrupt_jpeg else "bad.png"))
    good = _png(tmp_path / "good.png", Image.open(bad).size)
    out = tmp_path / "out.png"
    code = main(["fuse", good, bad, "-o", str(out)])
    _one_line(capsys, code, f"{bad}: corrupt image data")
    assert not out.exists()


def test_extra_pages_are_named_not_dropped_silently(tmp_path, capsys):
    from vaeedof.images import load_image
    from vaeedof.logs import setup_logging

    setup_logging()  # the log goes to stderr
    pages = [Image.fromarray(np.full((32, 32, 3), value, np.uint8)) for value in (10, 200)]
    for name in ("two.tif", "two.gif"):
        pages[0].save(tmp_path / name, save_all=True, append_images=pages[1:])
        assert load_image(tmp_path / name).data.float().mean() < 20  # the first page
        assert f"{tmp_path / name}: holds 2 pages; only the first is used" in capsys.readouterr().err


def test_sizes_are_compared_from_headers_before_decoding(tmp_path):
    """A small file declaring 16000 x 16000 pixels beside a 64 px frame: named by its size, not
    decoded (which cost 3 GB and 13 s), under a memory cap."""
    frame = _png(tmp_path / "frame.png")
    big = str(png_declaring(tmp_path / "declared.png", 16000, 16000))
    result = _run_capped(["fuse", frame, big, "-o", str(tmp_path / "out.png")], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [
        "vaeedof: error: input sizes differ: frame.png 64x48, declared.png 16000x16000"]


def test_header_sizes_follow_the_exif_orientation(tmp_path):
    from vaeedof.images import image_size, load_image

    rgb = np.random.default_rng(0).integers(0, 256, (40, 70, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        for suffix in (".png", ".jpg"):
            path = tmp_path / f"o{orientation}{suffix}"
            Image.fromarray(rgb).save(path, exif=exif)
            assert image_size(path) == load_image(path).size == ((40, 70) if orientation > 4 else (70, 40))


# ---------------------------------------------------------------------------------------------
# Checkpoints: the JSON is checked before any network is built
# ---------------------------------------------------------------------------------------------

CHECKPOINT_CASES = {
    "list": (None, "expected", "is not of type 'object'"),
    "no widths": ({"widths": None}, "'widths' is a required property"),
    "no checksums": ({"vae_checksums": None}, "'vae_checksums' is a required property"),
    "channels as text": ({"latent_channels": "32"}, "key 'latent_channels'", "not of type 'integer'"),
    "no attention heads": ({"attention_heads": 0}, "key 'attention_heads'", "minimum of 1"),
    "negative radius": ({"hybrid_radius": -3}, "key 'hybrid_radius'", "minimum of 0"),
    "unsplittable width": ({"widths": [8, 16, 200]}, "describes no buildable network"),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_checkpoint_json_is_validated_before_anything_is_built(tmp_path, capsys, case):
    changes, *expected = CHECKPOINT_CASES[case]
    weights = export_tiny_checkpoint(tmp_path, **(changes or {}))
    if changes is None:
        info = weights.with_suffix(".json")
        info.write_text(json.dumps([json.loads(info.read_text())]))
        expected = ["is not of type 'object'"]
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", seed=1)
    code = main(["fuse", a, b, "-o", str(tmp_path / "out.png"), "--checkpoint", str(weights)])
    _one_line(capsys, code, str(weights.with_suffix(".json")), *expected)
    assert not (tmp_path / "out.png").exists()


def test_checkpoint_describing_a_huge_network_allocates_nothing(tmp_path):
    """widths 8192: 16 billion parameters (64 GB) before; now refused by their count, under a cap."""
    weights = export_tiny_checkpoint(tmp_path, widths=[8192, 8192, 8192])
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", seed=1)
    result = _run_capped(["fuse", a, b, "-o", str(tmp_path / "out.png"), "--checkpoint", str(weights)],
                         tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "describes a network of 16,0" in lines[0] and "more than the bound" in lines[0]


# ---------------------------------------------------------------------------------------------
# Commands and flags
# ---------------------------------------------------------------------------------------------


def test_vae_check_outside_a_project_uses_the_models_vae(tmp_path, monkeypatch, capsys, tiny_model):
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    image = _png(tmp_path / "a.png", (96, 64))
    assert main(["vae-check", image, "--checkpoint", str(tiny_model / "m.safetensors"),
                 "--resources", str(tiny_model / "resources")]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith(f"{image}\t") and " dB" in printed[0]


def test_align_with_one_image(tmp_path, capsys):
    image = _png(tmp_path / "a.png")
    code = main(["align", image, "-o", str(tmp_path / "aligned")])
    _one_line(capsys, code, f"{image}: one frame; aligning needs two or more")
    assert not (tmp_path / "aligned").exists()


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_device_mps_without_mps(tmp_path, capsys):
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", seed=1)
    code = main(["fuse", a, b, "-o", str(tmp_path / "out.png"), "--device", "mps"])
    _one_line(capsys, code, "device mps: Apple's MPS is not available")


@pytest.mark.parametrize("override", ["seed.x=1", "render.samples.deep=2"])
def test_set_into_a_value_names_the_key(capsys, override):
    code = main(["--params", str(ROOT / "params.yaml"), "--set", override, "check-params"])
    _one_line(capsys, code, f"--set {override.split('=')[0]}", "is a value, not a section")


FLAG_CASES = {
    "tile 0": (["--tile", "0"], "argument --tile: 0: must be a positive multiple of 64"),
    "tile 100": (["--tile", "100"], "argument --tile: 100: must be a positive multiple of 64"),
    "tile text": (["--tile", "big"], "argument --tile: big: must be a positive multiple of 64"),
    "vae check nan": (["--vae-check-db", "nan"], "argument --vae-check-db: nan: must be a finite number"),
    "vae check inf": (["--vae-check-db=-inf"], "argument --vae-check-db: -inf: must be a finite number"),
}


@pytest.mark.parametrize("case", FLAG_CASES)
def test_flag_out_of_range_is_one_line(tmp_path, capsys, case):
    flags, expected = FLAG_CASES[case]
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", seed=1)
    with pytest.raises(SystemExit) as exited:
        main(["fuse", a, b, "-o", str(tmp_path / "out.png"), *flags])
    _one_line(capsys, exited.value.code, "vaeedof fuse: error:", expected)
    assert not (tmp_path / "out.png").exists()


def test_output_that_is_a_folder(tmp_path, capsys):
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", seed=1)
    (tmp_path / "results").mkdir()
    code = main(["fuse", a, b, "-o", str(tmp_path / "results")])
    _one_line(capsys, code, f"{tmp_path / 'results'}: is a folder; name the output file")
    assert list((tmp_path / "results").iterdir()) == []


def test_unwritable_output_is_named_before_the_model_loads(tmp_path, monkeypatch, capsys):
    """A read-only folder (root writes anywhere, so the refusal is simulated): the user's path
    is named before any work; the missing checkpoint shows the model was never opened."""
    import tempfile

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", os.path.join(dir, ".out.png.x.tmp"))

    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", seed=1)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    out = tmp_path / "out.png"
    code = main(["fuse", a, b, "-o", str(out), "--checkpoint", str(tmp_path / "none.safetensors")])
    line = _one_line(capsys, code, f"{out}: cannot be written (Permission denied)")
    assert ".tmp" not in line


def test_full_disk_names_the_users_file_not_the_temporary_one(tmp_path, monkeypatch, capsys):
    import vaeedof.atomic

    def full(source, dest):
        raise OSError(28, "No space left on device", str(source))

    monkeypatch.setattr(vaeedof.atomic.os, "replace", full)
    dest = tmp_path / "fused.png"
    with pytest.raises(OSError) as raised:
        atomic.write_bytes(dest, b"data")
    assert raised.value.filename == str(dest) and raised.value.errno == 28
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too


# ---------------------------------------------------------------------------------------------
# Folders of stacks: each skip and failure named, the others fused
# ---------------------------------------------------------------------------------------------


def _stacks(root: Path, **stacks) -> Path:
    for name, frames in stacks.items():
        (root / "stacks" / name).mkdir(parents=True)
        for index, make in enumerate(frames):
            make(root / "stacks" / name / f"{index}.png")
    return root / "stacks"


def test_stack_folder_names_a_bad_stack_before_any_work(tmp_path, capsys):
    stacks = _stacks(tmp_path, alone=[_png], good=[_png, _png],
                     mixed=[_png, lambda p: _png(p, (30, 20))])
    out = tmp_path / "fused"
    code = main(["fuse", str(stacks), "-o", str(out), "--checkpoint", str(tmp_path / "none.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not out.exists(), err
    assert err == [f"WARNING {stacks / 'alone'}: skipped, one image (a stack needs two or more)",
                   "vaeedof: error: stack mixed: input sizes differ: 0.png 64x48, 1.png 30x20"]


def test_stack_folder_goes_on_past_a_damaged_stack(tmp_path, capsys, tiny_model):
    stacks = _stacks(tmp_path, a=[_png, _png], b=[_png, _corrupt_png], c=[_png, _png])
    out = tmp_path / "fused"
    code = main(["fuse", str(stacks), "-o", str(out), "--checkpoint", str(tiny_model / "m.safetensors"),
                 "--resources", str(tiny_model / "resources"), "--no-vae-check", "--tile", "64"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["a.png", "c.png"]
    assert f"stack b: {stacks / 'b' / '1.png'}: corrupt image data" in err
    assert err.strip().splitlines()[-1] == (f"vaeedof: error: 1 of 3 stacks not fused (b; named above); "
                                            f"the others are in {out}")


# ---------------------------------------------------------------------------------------------
# Archives and rendered scenes
# ---------------------------------------------------------------------------------------------


def _lying_zip(path: Path) -> Path:
    """A zip whose member declares 1000 bytes but holds 102400: its CRC cannot match."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("subjects/a.png", bytes(range(256)) * 400)
    data = bytearray(path.read_bytes())
    data[22:26] = struct.pack("<I", 1000)  # the local header's size
    central = data.find(b"PK\x01\x02")
    data[central + 24:central + 28] = struct.pack("<I", 1000)
    path.write_bytes(bytes(data))
    return path


def _cut_tar(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as bundle:
        member = tarfile.TarInfo("subjects/a.png")
        member.size = 102400
        bundle.addfile(member, io.BytesIO(bytes(range(256)) * 400))
    path.write_bytes(path.read_bytes()[:300])
    return path


@pytest.mark.parametrize("make", [_lying_zip, _cut_tar], ids=["zip sizes lie", "tar.gz cut off"])
def test_damaged_archive_is_named_and_nothing_extracted(tmp_path, make):
    from vaeedof.assets.archives import extract

    archive = make(tmp_path / ("lie.zip" if make is _lying_zip else "cut.tar.gz"))
    with pytest.raises(VaeedofError, match=f"{archive.name}: damaged archive"):
        extract(archive, tmp_path / "extracted", 10**9)
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]


@pytest.mark.parametrize("change", [{"fingerprint": None}, {"focus_order": [0, 9]}, "not an object"])
def test_scene_json_without_what_readers_need(tmp_path, capsys, change):
    meta = {"focus_order": [0, 1], "planes": [{}, {}], "fingerprint": "f"}
    for index in range(1, 6):  # more scenes than patches.val_scenes, all fine
        (tmp_path / "train" / f"scene_{index:04d}").mkdir(parents=True)
        (tmp_path / "train" / f"scene_{index:04d}" / "scene.json").write_text(json.dumps(meta))
    scene = tmp_path / "train" / "scene_0000"
    scene.mkdir(parents=True)
    meta = ([] if change == "not an object"
            else {k: v for k, v in (meta | change).items() if v is not None})
    (scene / "scene.json").write_text(json.dumps(meta))
    code = main(["--params", str(ROOT / "params.yaml"), "patches", "--data", str(tmp_path / "train"),
                 "--out", str(tmp_path / "patches")])
    _one_line(capsys, code, f"{scene / 'scene.json'}: ")
    assert not (tmp_path / "patches").exists()


# Minimal arguments per command: `--set` must be read (and the bad key named) before any of them
# is looked at, or refused as meaningless for the command.
COMMAND_ARGS = {"assets": ["build"], "render": ["--scene", "s.json", "--out", "o"],
                "contact-sheet": ["--data", "d", "--out", "o.png"], "fuse": ["a.png", "-o", "o.png"],
                "align": ["a.png", "-o", "o"], "vae-check": ["a.png"]}


def _subcommands() -> list[str]:
    from vaeedof.cli import build_parser

    return sorted(next(a for a in build_parser()._actions if a.dest == "command").choices)


@pytest.mark.parametrize("command", [*_subcommands(), "assets list"])
@pytest.mark.parametrize("where", ["project", "elsewhere"])
def test_set_is_read_or_refused_by_every_command(tmp_path, monkeypatch, capsys, command, where):
    monkeypatch.chdir(tmp_path)
    if where == "project":
        (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    words = command.split()
    args = words[1:] or COMMAND_ARGS.get(command, [])
    try:
        code = main(["--set", "nonexistent.key=1", words[0], *args])
    except SystemExit as exited:  # argparse
        code = exited.code
    line = _one_line(capsys, code)
    from vaeedof.cli import READS_NO_PARAMETERS

    if command in READS_NO_PARAMETERS:
        assert line.endswith(f"--set nonexistent.key=1: `vaeedof {command}` reads no parameters"), line
    elif where == "project":  # the project's parameters, the override applied: the key refused
        source = "params.yaml + --set" if command == "configure" else "params.yaml"
        assert line.startswith(f"vaeedof: error: {source}: key '(top level)'") and "nonexistent" in line
    elif command in ("fuse", "vae-check", "real-sheet", "real-metrics"):  # the defaults, overridden
        assert line.startswith("vaeedof: error: --set: key '(top level)'") and "nonexistent" in line
    else:  # a project's command, run outside one
        assert line == "vaeedof: error: params.yaml: parameter file not found", line
