"""Tiled inference, hierarchical fusion and the `vaeedof fuse` command."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vaeedof.cli import main
from vaeedof.errors import VaeedofError
from vaeedof.fusion.engine import Fuser, group_stack, ramp, tile_starts
from vaeedof.nets.unet import FusionUNet

from .conftest import SHARED_MIRROR
from .synthetic import png_declaring, random_vae

REAL = SHARED_MIRROR.parent / "data" / "real"
needs_mirror = pytest.mark.skipif(not (SHARED_MIRROR / "taef2_encoder.pth").exists(),
                                  reason="no TAEF2 weights in the shared mirror")


def test_tile_layout_covers_with_quarter_overlap():
    assert tile_starts(100, 128, 32) == [0]
    starts = tile_starts(1000, 256, 64)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert all(b - a <= 256 - 64 for a, b in zip(starts, starts[1:], strict=False))
    weights = ramp(256, 64)
    assert weights.min() > 0 and weights.max() == 1 and weights[128] == 1
    for count in (8, 32, 50):
        groups = group_stack(count, 7)
        assert len(groups) == -(-count // 7)
        assert sum(groups, []) == list(range(count))  # consecutive frames, all of them
        assert all(len(g) <= 7 for g in groups) and max(map(len, groups)) - min(map(len, groups)) <= 1


class _LinearVae(torch.nn.Module):
    """An exact, linear stand-in for the VAE: 8x average pooling in, nearest up-sampling out."""

    def encode(self, images):
        return torch.nn.functional.avg_pool2d(images, 8)

    def decode(self, latents):
        return torch.nn.functional.interpolate(latents, scale_factor=8, mode="nearest")


def _mean_fuser(tile):
    """The tiling and blending machinery with networks whose fusion is the mean of the inputs:
    a U-Net with its zero-initialised head selects every input equally."""
    return Fuser(FusionUNet(3, 7, (8, 16, 32), 2), _LinearVae(), "cpu", tile=tile)


def test_latent_tiles_blend_exactly_without_seams():
    latents = [torch.rand(3, 45, 70) for _ in range(3)]
    fused, mix = _mean_fuser(128).fuse_latents(latents)  # 16 px latent tiles, 4 px overlaps
    assert fused.shape == (3, 45, 70) and mix.shape == (8, 45, 70)
    filled = [latents[i % 3] for i in range(7)]  # fewer inputs are filled by cyclic duplication
    assert torch.allclose(fused, torch.stack(filled).mean(0), atol=1e-5)
    whole, _ = _mean_fuser(None).fuse_latents(latents)
    assert torch.allclose(fused, whole, atol=1e-5)


def test_hierarchical_fusion_of_many_inputs():
    images = [torch.full((3, 64, 64), float(i) / 60) for i in range(49)]
    fused = _mean_fuser(64).fuse(images)
    # 7 groups of 7 consecutive frames, then their 7 results: the mean of group means.
    assert torch.allclose(fused, torch.stack(images).mean(0), atol=1e-5)
    assert _mean_fuser(64).fuse(images[:33]).shape == (3, 64, 64)
    with pytest.raises(VaeedofError, match="no input images"):
        _mean_fuser(64).fuse([])


def test_random_networks_any_size_and_input_count():
    model = FusionUNet(16, 7, (16, 32, 64), 2)
    torch.nn.init.normal_(model.head[-1].weight, std=0.01)
    fuser = Fuser(model, random_vae(), "cpu", tile=64)
    for count in (1, 2, 8):
        out = fuser.fuse([torch.rand(3, 70, 90) for _ in range(count)])
        assert out.shape == (3, 70, 90) and torch.isfinite(out).all()
    with pytest.raises(VaeedofError, match="multiple of 64"):
        Fuser(model, random_vae(), "cpu", tile=100)


def _png(path, size=(40, 30), mode="RGB", value=None):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (size[1], size[0], 3), np.uint8) if value is None else \
        np.full((size[1], size[0], 3), value, np.uint8)
    Image.fromarray(array).convert(mode).save(path)
    return str(path)


def test_latent_mode_stays_latent_on_sides_not_multiple_of_64(monkeypatch):
    """The padding of odd-sized images must not be taken for the output mode: latent mode never
    composes the hybrid output (it did whenever a side was not a multiple of 64)."""
    import vaeedof.fusion.engine as engine

    def no_hybrid(*args, **kwargs):
        raise AssertionError("latent mode composed the hybrid output")

    monkeypatch.setattr(engine, "compose", no_hybrid)
    model = FusionUNet(16, 7, (16, 32, 64), 2)
    fuser = Fuser(model, random_vae(), "cpu", tile=64, mode="hybrid")
    for size in ((64, 64), (70, 90), (100, 130)):
        out = fuser.fuse([torch.rand(3, *size) for _ in range(2)], mode="latent")
        assert out.shape == (3, *size)
    with pytest.raises(AssertionError, match="composed the hybrid"):
        fuser.fuse([torch.rand(3, 70, 90) for _ in range(2)], mode="hybrid")


def _truncated_jpeg(path):
    _png(path.with_suffix(".full.jpg"))  # the size of the other inputs: truncation is what fails
    data = path.with_suffix(".full.jpg").read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("case", ["none", "sizes", "corrupt", "empty", "format", "folder", "same",
                                  "checkpoint", "truncated", "bomb"])
def test_fuse_command_errors(tmp_path, capsys, case):
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png")
    out = str(tmp_path / "out.png")
    args = {
        "none": [str(tmp_path / "nothing*.png"), "-o", out],
        "sizes": [a, _png(tmp_path / "c.png", (41, 30)), "-o", out],
        "corrupt": [a, str(tmp_path / "bad.jpg"), "-o", out],
        "empty": [a, str(tmp_path / "empty.png"), "-o", out],
        "format": [a, b, "-o", str(tmp_path / "out.gif")],
        "folder": [a, b, "-o", str(tmp_path / "missing/out.png")],
        "same": [a, b, "-o", a],
        "checkpoint": [a, b, "-o", out, "--checkpoint", str(tmp_path / "none.safetensors")],
        "truncated": [a, str(tmp_path / "cut.jpg"), "-o", out],
        "bomb": [a, str(tmp_path / "bomb.png"), "-o", out],
    }[case]
    _truncated_jpeg(tmp_path / "cut.jpg")
    png_declaring(tmp_path / "bomb.png", 100_000, 100_000)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (tmp_path / "empty.png").write_bytes(b"")
    before = (tmp_path / "a.png").read_bytes()
    assert main(["fuse", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaeedof: error:"), err
    expected = {"none": "matches no file", "sizes": "c.png 41x30", "corrupt": "bad.jpg",
                "empty": "empty file", "format": "unsupported output format",
                "folder": "does not exist", "same": "one of the inputs", "checkpoint": "no trained model",
                "truncated": "cut.jpg: corrupt image data (Premature end of JPEG file)",
                "bomb": "bomb.png: 100000x100000 pixels exceeds the limit"}
    assert expected[case] in err[0]
    assert (tmp_path / "a.png").read_bytes() == before
    assert not (tmp_path / "out.png").exists()


@needs_mirror
def test_fuse_real_pair_tiled_matches_whole(tmp_path, monkeypatch):
    """A real Lytro pair through TAEF2 and an (untrained, mean-selecting) U-Net: tiled and whole
    results agree, and the tiled output has no seam lines at tile borders."""
    from vaeedof.images import psnr, read_image
    from vaeedof.nets.vae import load_vae

    monkeypatch.setenv("VAEEDOF_ASSET_MIRROR", str(SHARED_MIRROR))
    vae = load_vae("taef2", tmp_path / "res")
    torch.manual_seed(0)
    model = FusionUNet(32, 7, (32, 64, 128), 4)
    torch.nn.init.normal_(model.head[-1].weight, std=0.02)
    stack = [read_image(REAL / "Lytro/lytro-01" / n)[:, :256, :320] for n in ("A.jpg", "B.jpg")]
    whole = Fuser(model, vae, "cpu", tile=None).fuse(stack)
    tiled = Fuser(model, vae, "cpu", tile=128).fuse(stack)
    assert psnr(whole, tiled) > 30.0
    grey = tiled.mean(0)
    column_steps = (grey[:, 1:] - grey[:, :-1]).abs().mean(0)
    for border in (96, 128, 192, 224):  # tile edges and overlap ends at stride 96
        assert column_steps[border - 1] < 2.0 * column_steps.median() + 0.01


@needs_mirror
def test_fuse_command_writes_16_bit_with_profile(tmp_path, monkeypatch, capsys):
    from safetensors.torch import save_file

    from vaeedof.images import load_image
    from vaeedof.nets.vae import load_vae

    monkeypatch.setenv("VAEEDOF_ASSET_MIRROR", str(SHARED_MIRROR))
    vae = load_vae("taef2", tmp_path / "resources")
    model = FusionUNet(32, 7, (16, 32, 64), 2)
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    (tmp_path / "m.json").write_text(json.dumps({
        "vae": "taef2", "vae_checksums": vae.checksums, "latent_channels": 32, "max_inputs": 7,
        "widths": [16, 32, 64], "attention_heads": 2}))
    rgb = np.asarray(Image.open(REAL / "Lytro/lytro-01/A.jpg").convert("RGB"))[:96, :128]
    sixteen = (rgb.astype(np.uint16) * 257)
    import cv2

    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), sixteen[..., ::-1])
    monkeypatch.chdir(tmp_path)
    assert main(["fuse", "a.png", "b.png", "-o", "fused.png", "--checkpoint", "m.safetensors",
                 "--tile", "64", "--vae-check-db", "99"]) == 0
    assert "a.png: the VAE reconstructs this input at" in capsys.readouterr().err
    out = load_image(tmp_path / "fused.png")
    assert out.bits == 16 and out.pixels.shape == (3, 96, 128)


def test_fuse_tile_follows_infer_tile(tmp_path, monkeypatch):
    """`vaeedof fuse` without --tile uses infer.tile of the params file (the schema's default
    outside a project)."""
    import vaeedof.fusion.loader as loader

    seen = {}

    def fake_load_fuser(checkpoint, device, tile, *args, **kwargs):
        seen["tile"] = tile
        return Fuser(FusionUNet(16, 7, (16, 32, 64), 2), random_vae(), "cpu", tile=tile)

    monkeypatch.setattr(loader, "load_fuser", fake_load_fuser)
    monkeypatch.chdir(tmp_path)
    a, b = _png(tmp_path / "a.png", (70, 50)), _png(tmp_path / "b.png", (70, 50))
    assert main(["--params", str(tmp_path / "none.yaml"), "fuse", a, b, "-o", "o.png"]) == 0
    assert seen == {"tile": 512}
    from .conftest import ROOT

    (tmp_path / "p.yaml").write_text((ROOT / "params.yaml").read_text().replace("tile: 512", "tile: 128"))
    assert main(["--params", "p.yaml", "fuse", a, b, "-o", "o.png"]) == 0
    assert seen == {"tile": 128}
    assert main(["--params", "p.yaml", "fuse", a, b, "-o", "o.png", "--tile", "64"]) == 0
    assert seen == {"tile": 64}


def test_vae_tiles_are_exact():
    """Encoding and decoding in tiles with the receptive field's halo equals one pass over the
    whole image, GroupNorm branches (TAEF2 layout) included."""
    from vaeedof.fusion import vae_tiles

    vae = random_vae("taef2")
    image = torch.rand(3, 200, 264)
    whole = vae.encode(image[None])[0]
    tiled = vae_tiles.encode(vae, image, core=64)  # 4 x 5 tiles, 72 px halos
    assert torch.allclose(tiled, whole, atol=1e-5), (tiled - whole).abs().max()
    decoded_whole = vae.decode(whole[None])[0]
    decoded = vae_tiles.decode(vae, whole, core=64)
    assert torch.allclose(decoded, decoded_whole, atol=1e-5), (decoded - decoded_whole).abs().max()
    window = vae_tiles.decode_window(vae, whole, (5, 15, 8, 20))
    assert torch.allclose(window, decoded_whole[:, 40:120, 64:160], atol=1e-5)
    assert vae_tiles.spans(200, 64, 8) == [(0, 48), (48, 96), (96, 152), (152, 200)]


@needs_mirror
def test_tiled_fusion_close_to_whole_image_fusion(monkeypatch, tmp_path):
    """U-Net tiles with quarter overlaps and blending (and exact VAE tiles) versus one pass over
    the whole image, with untrained networks (whose attention makes every tile differ): close in
    both output modes. With a trained model the gap is within 0.1 dB
    (`test_demo_training.py`)."""
    from vaeedof.images import psnr
    from vaeedof.nets.vae import load_vae

    monkeypatch.setenv("VAEEDOF_ASSET_MIRROR", str(SHARED_MIRROR))
    vae = load_vae("taef2", tmp_path / "res")
    gt = read_photo_crop(256, 320)
    blurred = torch.nn.functional.avg_pool2d(gt[None], 9, 1, 4, count_include_pad=False)[0]
    a, b = gt.clone(), gt.clone()
    a[:, :, :160], b[:, :, 160:] = blurred[:, :, :160], blurred[:, :, 160:]
    torch.manual_seed(0)
    model = FusionUNet(32, 7, (32, 64, 128), 4)
    torch.nn.init.normal_(model.head[-1].weight, std=0.02)
    for mode in ("latent", "hybrid"):
        whole = Fuser(model, vae, "cpu", tile=None, mode=mode, vae_tile=1024).fuse([a, b])
        tiled = Fuser(model, vae, "cpu", tile=128, mode=mode, vae_tile=128).fuse([a, b])
        assert abs(psnr(tiled, gt) - psnr(whole, gt)) < 0.5, mode
        assert psnr(tiled, whole) > 30, mode


def read_photo_crop(height, width):
    from vaeedof.images import read_image

    return read_image(REAL / "Lytro/lytro-01" / "A.jpg")[:, :height, :width]


def test_vae_check_window_is_a_small_share_of_the_image():
    from vaeedof.fusion.vae_check import centred_window

    for height, width in ((4096, 4096), (520, 520), (360, 640)):
        y0, y1, x0, x1 = centred_window(height, width)
        area = (y1 - y0) * (x1 - x0) * 64
        assert area <= max(0.07 * height * width, 136**2), (height, width)
        assert (y1 - y0) * 8 >= min(128, height) and (x1 - x0) * 8 >= min(128, width)
    assert centred_window(64, 48) == (0, 8, 0, 6)  # small images: the whole image


def test_fuse_a_folder_of_stacks_loads_the_model_once(tmp_path, monkeypatch):
    import vaeedof.fusion.loader as loader

    loads = []

    def fake_load_fuser(*args, **kwargs):
        loads.append(args)
        return Fuser(FusionUNet(16, 7, (16, 32, 64), 2), random_vae(), "cpu", tile=64)

    monkeypatch.setattr(loader, "load_fuser", fake_load_fuser)
    for stack in ("pcb", "toy"):
        (tmp_path / "stacks" / stack).mkdir(parents=True)
        for name in ("a.png", "b.png", "c.png"):
            _png(tmp_path / "stacks" / stack / name, (72, 40))
    assert main(["fuse", str(tmp_path / "stacks"), "-o", str(tmp_path / "out"), "--format", "jpg",
                 "--no-vae-check"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pcb.jpg", "toy.jpg"]
    assert len(loads) == 1 and Image.open(tmp_path / "out" / "toy.jpg").size == (72, 40)


@pytest.mark.parametrize("given, quality", [([], "fast"), (["--quality", "max"], "max")])
def test_fuse_quality_reaches_the_fuser(tmp_path, monkeypatch, given, quality):
    import vaeedof.fusion.loader as loader

    chosen = []

    def fake_load_fuser(*args, **kwargs):
        chosen.append(kwargs["quality"])
        return Fuser(FusionUNet(16, 7, (16, 32, 64), 2), random_vae(), "cpu", tile=64, mode="hybrid",
                     quality=kwargs["quality"])

    monkeypatch.setattr(loader, "load_fuser", fake_load_fuser)
    for name in ("a.png", "b.png"):
        _png(tmp_path / name, (72, 40))
    assert main(["fuse", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "out.png"),
                 "--no-vae-check", *given]) == 0
    assert chosen == [quality] and (tmp_path / "out.png").is_file()
    with pytest.raises(VaeedofError, match="quality 'best'"):
        Fuser(FusionUNet(16, 7, (16, 32, 64), 2), random_vae(), "cpu", quality="best")


def test_bf16_precision_is_close_to_fp32_and_bad_precision_refused():
    model = FusionUNet(16, 7, (16, 32, 64), 2)
    torch.nn.init.normal_(model.head[-1].weight, std=0.01)
    images = [torch.rand(3, 72, 88) for _ in range(2)]
    exact = Fuser(model, random_vae(), "cpu", tile=64, precision="fp32").fuse(images)
    half = Fuser(model, random_vae(), "cpu", tile=64, precision="bf16").fuse(images)
    assert half.dtype == torch.float32 and half.shape == exact.shape
    assert (half - exact).abs().mean() < 0.02
    with pytest.raises(VaeedofError, match="precision 'fp8'"):
        Fuser(model, random_vae(), "cpu", precision="fp8")


def test_fuse_writes_a_16_bit_depth_map_beside_the_image(tmp_path, monkeypatch):
    import vaeedof.fusion.loader as loader

    monkeypatch.setattr(loader, "load_fuser", lambda *args, **kwargs: Fuser(
        FusionUNet(16, 7, (16, 32, 64), 2), random_vae(), "cpu", tile=64, mode="hybrid"))
    for name, value in (("a.png", 40), ("b.png", 120), ("c.png", 200)):
        _png(tmp_path / name, (72, 40), value=value)
    frames = [str(tmp_path / n) for n in ("a.png", "b.png", "c.png")]
    out, depth, sure = tmp_path / "out.png", tmp_path / "depth.png", tmp_path / "sure.tif"
    assert main(["fuse", *frames, "-o", str(out), "--depth-map", str(depth), "--depth-confidence", str(sure),
                 "--no-vae-check"]) == 0
    for path in (depth, sure):
        with Image.open(path) as image:
            assert image.mode.startswith("I;16") and image.size == (72, 40), path
            assert np.array(image).max() <= 65535
    assert Image.open(out).size == (72, 40)
    # Checked before the model is loaded: another output's name, a format without 16 bits, a
    # confidence without its map.
    from vaeedof.fusion import files

    for options, said in (({"depth_map": out}, "would overwrite another output"),
                          ({"depth_map": tmp_path / "d.jpg"}, "16-bit"),
                          ({"depth_map": depth, "depth_confidence": depth}, "would overwrite another output"),
                          ({"depth_confidence": sure}, "goes with a depth map")):
        with pytest.raises(VaeedofError, match=said):
            files.fuse_items(frames, out, None, **options)
