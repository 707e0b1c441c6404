"""The release model: which model `vaeedof fuse` uses, the fp16 export with its model card, and a
fresh install fusing from any folder with the weights shipped in the package."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaeedof.cli import main
from vaeedof.evaluation.release import export_release
from vaeedof.fusion import loader
from vaeedof.nets.hybrid import HybridSettings
from vaeedof.nets.unet import FusionUNet

from .conftest import ROOT, SHARED_MIRROR, tiny_params

REAL = ROOT.parent / "shared" / "data" / "real"


def test_checkpoint_choice_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert loader.choose_checkpoint(None) == (loader.release_weights(), "the release model")
    (tmp_path / "models").mkdir()
    (tmp_path / "models/fusion_ema.safetensors").write_bytes(b"")
    assert loader.choose_checkpoint(None)[0] == loader.PIPELINE_WEIGHTS
    assert loader.choose_checkpoint("x.safetensors") == (Path("x.safetensors"), "--checkpoint")


def _metrics():
    scores = {"PSNR": 30.0, "SSIM": 0.95, "MS-SSIM": 0.97, "HaarPSI": 0.8}
    return {"scenes": 3, "methods": {"latent": scores, "gff": scores}}


def test_export_halves_the_weights_and_writes_the_card(tmp_path):
    from safetensors.torch import load_file, save_file

    model = FusionUNet(32, 7, (16, 32, 64), 2)
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    info = {"vae": "taef2", "vae_checksums": {"encoder": "e", "decoder": "d"}, "latent_channels": 32,
            "max_inputs": 7, "widths": [16, 32, 64], "attention_heads": 2, "steps": 5,
            "train_params_hash": "h", "hybrid_trained": True}
    (tmp_path / "w.json").write_text(json.dumps(info))
    (tmp_path / "reports").mkdir()
    metrics = _metrics()
    metrics["methods"] |= {"hybrid": dict(metrics["methods"]["gff"], PSNR=31.0),
                           "openfocus-guided-filter": dict(metrics["methods"]["gff"], PSNR=30.5)}
    (tmp_path / "reports/metrics.json").write_text(json.dumps(metrics))
    real = ["collection,stack,method,inputs,qabf,qy,nmi,status"] + [
        f"Lytro,mean,{method},24,{qabf},0.97,1.0,ok"
        for method, qabf in [("hybrid", 0.74), ("gff", 0.73), ("openfocus-guided-filter", 0.72)]]
    (tmp_path / "reports/real_metrics.csv").write_text("\n".join(real) + "\n")
    params = tiny_params()
    params["evaluate"]["peers"] = ["openfocus-guided-filter"]
    dest = export_release(tmp_path / "w.safetensors", tmp_path / "reports", params, tmp_path / "out")
    state = load_file(str(dest))
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    reloaded = FusionUNet(32, 7, (16, 32, 64), 2)
    reloaded.load_state_dict(state)  # fp16 tensors load into the fp32 model
    for name, value in model.state_dict().items():
        assert torch.allclose(reloaded.state_dict()[name], value, atol=1e-3, rtol=1e-3), name
    card = (tmp_path / "out/MODEL_CARD.md").read_text()
    written = json.loads((tmp_path / "out/fusion_release.json").read_text())
    assert written["weights_sha256"] in card and written["dtype"] == "float16"
    # The hybrid settings its card was measured with travel with it (the fuser reads them).
    assert HybridSettings.of(written) == HybridSettings.of(params["fusion"])
    assert set(HybridSettings.KEYS.values()) <= set(written)
    assert "| gff | 30.00 |" in card and "| openfocus-guided-filter | 30.50 |" in card
    # The peers' rows are compared as GFF's are, on the test split and on the real stacks.
    assert "- hybrid vs openfocus-guided-filter: PSNR +0.50 dB" in card
    assert "- Lytro: hybrid Q^AB/F vs gff +0.0100, openfocus-guided-filter +0.0200" in card


def test_rescoring_the_shipped_release_keeps_its_weights_and_training_records(tmp_path):
    """`vaeedof release --weights <the release> --reports <new scores>`: same bytes, the card
    rewritten from the new reports, the training's records (source checksum, wall time) kept."""
    from safetensors.torch import save_file

    from vaeedof.hashing import sha256_file

    out = tmp_path / "release"
    out.mkdir()
    weights = out / "fusion_release.safetensors"
    save_file({k: v.half() for k, v in FusionUNet(32, 7, (16, 32, 64), 2).state_dict().items()}, str(weights))
    before = weights.read_bytes()
    info = {"vae": "taef2", "vae_checksums": {"encoder": "e", "decoder": "d"}, "latent_channels": 32,
            "max_inputs": 7, "widths": [16, 32, 64], "attention_heads": 2, "steps": 5,
            "train_params_hash": "h", "hybrid_trained": True, "source_weights_sha256": "fp32-original",
            "train_wall_s": 4140.0}
    weights.with_suffix(".json").write_text(json.dumps(info))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/metrics.json").write_text(json.dumps(_metrics()))
    export_release(weights, tmp_path / "reports", tiny_params(), out, benchmark=tmp_path / "none.tsv")
    written = json.loads(weights.with_suffix(".json").read_text())
    assert weights.read_bytes() == before and written["weights_sha256"] == sha256_file(weights)
    assert written["source_weights_sha256"] == "fp32-original" and written["train_wall_s"] == 4140.0
    card = (out / "MODEL_CARD.md").read_text()
    assert "wall time: 69 min" in card and "| gff | 30.00 |" in card


def test_release_model_is_shipped_with_its_card():
    weights = loader.release_weights()
    assert weights.is_file(), "the release model must ship in the package (vaeedof release)"
    info = json.loads(weights.with_suffix(".json").read_text())
    from vaeedof.hashing import sha256_file

    assert sha256_file(weights) == info["weights_sha256"]
    assert info["weights_sha256"] in (weights.parent / "MODEL_CARD.md").read_text()


@pytest.mark.skipif(not (SHARED_MIRROR.is_dir() and REAL.is_dir()), reason="no mirror/real data")
def test_fresh_folder_fuses_with_the_release_model(tmp_path, monkeypatch, capsys):
    """No params, no models/ here: `vaeedof fuse A B -o out` uses the packaged release model."""
    monkeypatch.setenv("VAEEDOF_ASSET_MIRROR", str(SHARED_MIRROR))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    work = tmp_path / "anywhere"
    work.mkdir()
    monkeypatch.chdir(work)
    tmp_path = work
    for name in ("A.jpg", "B.jpg"):
        shutil.copy(REAL / "Lytro/lytro-01" / name, tmp_path / name)
    assert main(["fuse", "A.jpg", "B.jpg", "-o", "out.png"]) == 0
    assert "(the release model)" in capsys.readouterr().err
    fused = np.asarray(Image.open(tmp_path / "out.png"))
    assert fused.shape == np.asarray(Image.open(tmp_path / "A.jpg")).shape
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A.jpg", "B.jpg", "out.png"]  # nothing else
    assert (tmp_path.parent / "cache/vaeedof/downloads/taef2_encoder.pth").is_file()


@pytest.mark.skipif(not (SHARED_MIRROR.is_dir() and REAL.is_dir()), reason="no mirror/real data")
def test_set_hybrid_keys_change_what_fuse_does(tmp_path, monkeypatch, capsys):
    """The hybrid settings are the model's, and `--set fusion.hybrid_*=...` overrides them."""
    monkeypatch.setenv("VAEEDOF_ASSET_MIRROR", str(SHARED_MIRROR))
    monkeypatch.chdir(tmp_path)
    for name in ("A.jpg", "B.jpg"):  # a 128 px window of a real pair
        Image.open(REAL / "Lytro/lytro-01" / name).crop((200, 200, 328, 328)).save(tmp_path / f"{name}.png")
    assert main(["fuse", "A.jpg.png", "B.jpg.png", "-o", "model.png"]) == 0
    assert "hybrid settings over" not in capsys.readouterr().err
    assert main(["--set", "fusion.hybrid_focus_weight=0", "--set", "fusion.hybrid_reblur_weight=0", "fuse",
                 "A.jpg.png", "B.jpg.png", "-o", "set.png"]) == 0
    assert ("hybrid settings over the model's: fusion.hybrid_focus_weight=0, fusion.hybrid_reblur_weight=0"
            in capsys.readouterr().err)
    model, changed = (np.asarray(Image.open(name), dtype=np.int16) for name in ("model.png", "set.png"))
    assert model.shape == changed.shape and np.abs(model - changed).max() > 0


@pytest.mark.skipif(not (SHARED_MIRROR.is_dir() and REAL.is_dir()), reason="no mirror/real data")
def test_the_library_fuses_as_the_command_does(tmp_path, monkeypatch):
    """`vaeedof.fusion.fuse(images)` and `vaeedof fuse` outside a project: the same model (the
    release), the same output mode (hybrid), the same pixels."""
    from vaeedof.fusion import fuse
    from vaeedof.images import as_float, load_image

    monkeypatch.setenv("VAEEDOF_ASSET_MIRROR", str(SHARED_MIRROR))
    monkeypatch.chdir(tmp_path)
    for name in ("A.jpg", "B.jpg"):
        Image.open(REAL / "Lytro/lytro-01" / name).crop((100, 100, 228, 228)).save(f"{name}.png")
    assert main(["fuse", "A.jpg.png", "B.jpg.png", "-o", "cli.png", "--align", "off", "--no-vae-check"]) == 0
    images = [as_float(load_image(f"{name}.png").data) for name in ("A.jpg", "B.jpg")]
    library = (fuse(images).clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(library, np.asarray(Image.open("cli.png")))
