"""Real Blender renders at tiny resolutions: depth of field, transparency, plane index."""

import json

import numpy as np
import pytest
from PIL import Image

from vaeedof import atomic, scenes
from vaeedof.hashing import sha256_file

from .conftest import tiny_params

bpy = pytest.importorskip("bpy")
pytestmark = [pytest.mark.blender, pytest.mark.slow]


def _laplacian_energy(image: np.ndarray) -> np.ndarray:
    grey = image.astype(np.float64).mean(axis=-1)
    lap = np.zeros_like(grey)
    lap[1:-1, 1:-1] = (4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1]
                       - grey[1:-1, :-2] - grey[1:-1, 2:])
    return lap**2


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        inner = mask.copy()
        inner[1:, :] &= mask[:-1, :]
        inner[:-1, :] &= mask[1:, :]
        inner[:, 1:] &= mask[:, :-1]
        inner[:, :-1] &= mask[:, 1:]
        mask = inner
    return mask


def _load(out, name):
    return np.asarray(Image.open(out / name).convert("RGB"))


@pytest.fixture(scope="module")
def dof_scene(tmp_path_factory):
    """Five subjects at well-separated depths, one per image region, wide aperture."""
    from vaeedof.assets.build import build, load_index
    from vaeedof.render.renderer import render_scene

    root = tmp_path_factory.mktemp("dof")
    params = tiny_params()
    params["render"].update(resolution=96, samples=16)
    index = load_index(build(params, root / "resources"))
    spec = scenes.sample_scene(params, "train", 0, index)
    spec["camera"].update(fstop=0.2, focal_length_mm=100.0, aperture_m=0.5)
    layout = [(-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5), (0.0, 0.0)]
    for plane, depth, (fx, fz) in zip(spec["planes"], [1.2, 1.8, 2.7, 4.0, 6.0], layout, strict=False):
        half = scenes.view_half_width(depth, 100.0, 36.0)
        plane.update(distance_m=depth, center_m=[fx * half, fz * half], height_m=0.8 * half,
                     width_m=0.8 * half, rotation_deg=0.0)
    background = spec["planes"][-1]
    margin = scenes.max_blur_margin(0.5, 1.2, 10.0) * 1.1
    half_view = scenes.view_half_width(10.0, 100.0, 36.0)
    background.update(view_size_m=2 * half_view, width_m=2 * (half_view + margin),
                      height_m=2 * (half_view + margin))
    out = root / "scene"
    assert render_scene(spec, params, out, threads=2, blender_log=root / "blender.log")
    return spec, params, out


def test_outputs_complete(dof_scene):
    spec, params, out = dof_scene
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"focus_{k}.png" for k in range(6)]
                           + ["gt.png", "index.png", "scene.json", ".complete.json", atomic.OWNER_FILE])
    meta = json.loads((out / "scene.json").read_text())
    assert meta["render"]["blender"].startswith("5.0")
    assert meta["render"]["device_used"] == "CPU"
    assert meta["focus_order"] == list(range(6))
    assert _load(out, "gt.png").shape == (96, 96, 3)
    assert not list(out.parent.glob(".scene.*"))  # no temporary directory left behind


def test_depth_of_field_focuses_each_plane(dof_scene):
    spec, _, out = dof_scene
    index = np.asarray(Image.open(out / "index.png"))
    focus = [_laplacian_energy(_load(out, f"focus_{k}.png")) for k in range(6)]
    gt = _laplacian_energy(_load(out, "gt.png"))
    checked = 0
    for k in range(6):
        region = _erode(index == k, 2)
        if region.sum() < 30:
            continue
        energy = [float(f[region].mean()) for f in focus]
        best = int(np.argmax(energy))
        assert best == k, f"plane {k}: sharpest render is focus_{best} ({energy})"
        others = max(e for j, e in enumerate(energy) if j != k)
        assert energy[k] > 1.3 * others, f"plane {k}: not measurably sharper ({energy})"
        assert float(gt[region].mean()) >= 0.9 * energy[k], f"plane {k}: GT blurrier than focus"
        checked += 1
    assert checked >= 5


def test_rerender_is_skipped_when_current(dof_scene):
    from vaeedof.render.renderer import render_scene

    spec, params, out = dof_scene
    before = (out / "gt.png").stat().st_mtime_ns
    assert render_scene(spec, params, out, threads=2) is False
    assert (out / "gt.png").stat().st_mtime_ns == before
    # Snakemake removes the declared output (scene.json) before a rerun: nothing is re-rendered.
    meta = (out / "scene.json").read_bytes()
    (out / "scene.json").unlink()
    assert render_scene(spec, params, out, threads=2) is False
    assert (out / "scene.json").read_bytes() == meta
    assert (out / "gt.png").stat().st_mtime_ns == before
    # A changed setting does re-render.
    changed = dict(params, render=dict(params["render"], samples=params["render"]["samples"] + 1))
    assert render_scene(spec, changed, out, threads=2) is True


def test_transparency_shows_the_plane_behind(tmp_path):
    from vaeedof.render.renderer import NO_PLANE, render_scene

    params = tiny_params(planes=1)
    params["render"].update(resolution=64, samples=8)
    size = 128
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0] = 230  # red subject
    rgba[..., 3] = 255
    rgba[:, : size // 2, 3] = 0  # left half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "subject.png")
    blue = np.zeros((size, size, 3), np.uint8)
    blue[..., 2] = 220
    Image.fromarray(blue).save(tmp_path / "background.png")
    from vaeedof.assets import procedural
    from vaeedof.assets.hdr import write_hdr

    write_hdr(tmp_path / "env.hdr", procedural.hdri(np.random.default_rng(0), 64))

    def entry(name):
        path = tmp_path / name
        return {"id": name, "path": str(path), "sha256": sha256_file(path), "width": size,
                "height": size}

    assets = {"subjects": {"train": [entry("subject.png")]},
              "backgrounds": {"train": [entry("background.png")]}, "hdris": [entry("env.hdr")]}
    spec = scenes.sample_scene(params, "train", 0, assets)
    subject = spec["planes"][0]
    half = scenes.view_half_width(subject["distance_m"], spec["camera"]["focal_length_mm"], 36.0)
    subject.update(center_m=[0.0, 0.0], height_m=1.2 * half, width_m=1.2 * half, rotation_deg=0.0)
    out = tmp_path / "scene"
    render_scene(spec, params, out, threads=2, blender_log=tmp_path / "blender.log")
    index = np.asarray(Image.open(out / "index.png"))
    gt = _load(out, "gt.png").astype(int)
    # The subject spans the central 60% of the view; its left half is transparent.
    left = (slice(16, 48), slice(16, 28))
    right = (slice(16, 48), slice(36, 48))
    assert (index[left] == 1).all(), "transparent half must index the background plane"
    assert (index[right] == 0).all()
    assert (gt[left][..., 2] > gt[left][..., 0] + 60).all(), "background must show through"
    assert (gt[right][..., 0] > gt[right][..., 2] + 60).all()
    assert NO_PLANE not in index


def test_absent_gpu_device_falls_back_to_cpu(tmp_path, params, caplog):
    from vaeedof.assets.build import build, load_index
    from vaeedof.render.renderer import render_scene

    index = load_index(build(params, tmp_path / "resources"))
    spec = scenes.sample_scene(params, "train", 0, index)
    params["render"].update(device="OPTIX", resolution=32, samples=1, denoise=False)
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from vaeedof.logs import get_logger

    get_logger().addHandler(caplog.handler)
    try:
        render_scene(spec, params, tmp_path / "out", blender_log=tmp_path / "blender.log")
    finally:
        get_logger().removeHandler(caplog.handler)
    meta = json.loads((tmp_path / "out/scene.json").read_text())
    assert meta["render"]["device"] == "OPTIX" and meta["render"]["device_used"] == "CPU"
    assert "not available; falling back to CPU" in caplog.text


def test_missing_or_tampered_asset_is_refused(tmp_path, params):
    from vaeedof.assets.build import build, load_index
    from vaeedof.errors import VaeedofError
    from vaeedof.render.renderer import render_scene

    index = load_index(build(params, tmp_path / "resources"))
    spec = scenes.sample_scene(params, "train", 0, index)
    with open(spec["planes"][0]["image"], "ab") as handle:
        handle.write(b"x")
    with pytest.raises(VaeedofError, match="fails its checksum"):
        render_scene(spec, params, tmp_path / "out")
    assert not (tmp_path / "out").exists()
