"""The paper's claim at a small real scale: rendered MattingMFIF crops, TAEF2 latents, a short CPU
training; the EMA model's validation PSNR must clearly beat the mean of the inputs."""

import json

import pytest

from vaeedof import scenes
from vaeedof.assets.build import build, load_index
from vaeedof.nets.vae import load_from_params
from vaeedof.training import latents, patches
from vaeedof.training.train import train

from .conftest import SHARED_MIRROR, tiny_params

pytest.importorskip("bpy")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.blender,
    pytest.mark.skipif(not (SHARED_MIRROR / "taef2_encoder.pth").exists(), reason="no TAEF2 weights"),
]


def test_trained_model_beats_mean_of_inputs(tmp_path, monkeypatch):
    from vaeedof.render.renderer import render_scene

    monkeypatch.setenv("VAEEDOF_ASSET_MIRROR", str(SHARED_MIRROR))
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    params["assets"]["procedural"].update(subjects_train=12, backgrounds_train=4, subject_size=128)
    params["scenes"].update(train=14, test=0)
    params["render"].update(resolution=768, crop=96, samples=8)
    params["patches"].update(size=64, per_scene=16, val_scenes=2, val_per_scene=8, shard_size=64)
    params["train"].update(steps=300, global_batch=16, lr=1e-3, warmup_steps=20, val_every=300,
                           checkpoint_every=300, log_every=100)
    index = load_index(build(params, "resources"))
    for spec_path in scenes.write_scenes(params, index, "data/scenes"):
        spec = json.loads(spec_path.read_text())
        render_scene(spec, params, f"data/mattingmfif/train/{spec['scene_id']}", threads=2)
    patches.extract(params, "data/mattingmfif/train", "data/patches")
    vae = load_from_params(params, "resources")
    latents.build(vae, "data/patches", "data/latents")
    train(params, "data/latents", "data/patches", "models", vae_loader=lambda: vae, track=False)
    info = json.loads((tmp_path / "models/fusion_ema.json").read_text())
    scores = info["final_metrics"]
    print("validation PSNR:", {k: round(v, 2) for k, v in scores.items() if k.startswith("val")})
    assert scores["val_psnr"] > scores["val_psnr_mean_of_inputs"] + 1.0, scores
    assert scores["val_psnr"] <= scores["val_psnr_vae_ceiling"] + 1.0, scores
    # The hybrid output keeps exact in-focus pixels: well above the latent output it starts from.
    assert scores["val_psnr_hybrid"] > scores["val_psnr"] + 2.0, scores

    # Tiled inference (U-Net tiles with quarter overlaps, blended) loses nothing against one pass
    # over the whole image (within 0.1 dB or better), in both output modes, on the rendered scenes.
    # Measured: tiles of the training patch size are better here (latent +0.9 dB): the whole
    # 96 px image is padded past the size the model was trained on.
    from vaeedof.fusion.loader import load_fuser
    from vaeedof.images import psnr
    from vaeedof.render import layout

    whole, tiled = (load_fuser("models/fusion_ema.safetensors", "cpu", tile, "resources")
                    for tile in (None, 64))
    for mode in ("latent", "hybrid"):
        gaps = []
        for scene in layout.rendered_scenes("data/mattingmfif/train")[:6]:
            inputs, gt = layout.load_tensors(scene)
            gaps.append(psnr(tiled.fuse(inputs, mode), gt) - psnr(whole.fuse(inputs, mode), gt))
        print(mode, "tiled - whole PSNR per scene:", [round(g, 3) for g in gaps])
        assert sum(gaps) / len(gaps) > -0.1, (mode, gaps)
