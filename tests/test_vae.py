import os
import statistics

import pytest
import torch

from vaeedof.errors import VaeedofError
from vaeedof.images import psnr, read_image
from vaeedof.nets.vae import SPECS, TinyVAE, load_state_dict, load_vae

from .conftest import SHARED_MIRROR

REAL = SHARED_MIRROR.parent / "data" / "real"
needs_mirror = pytest.mark.skipif(not (SHARED_MIRROR / "taef2_encoder.pth").exists(),
                                  reason="no TAEF2 weights in the shared mirror")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_layouts_encode_and_decode_any_size(name):
    vae = TinyVAE(SPECS[name])
    image = torch.rand(1, 3, 37, 50)
    latents = vae.encode(image)
    assert latents.shape == (1, SPECS[name].latent_channels, 5, 7)
    assert vae.decode(latents, image.shape[-2:]).shape == image.shape
    assert not any(p.requires_grad for p in vae.parameters())


def test_fp16_weights_load_into_fp32_and_bf16(tmp_path):
    source = TinyVAE(SPECS["taef2"])
    for part in ("encoder", "decoder"):
        torch.save({k: v.half() for k, v in getattr(source, part).state_dict().items()},
                   tmp_path / f"{part}.pth")
    for dtype in (torch.float32, torch.bfloat16):
        vae = TinyVAE(SPECS["taef2"]).to(dtype=dtype)
        vae.load_weights(tmp_path / "encoder.pth", tmp_path / "decoder.pth")
        assert next(vae.parameters()).dtype == dtype
        assert set(vae.checksums) == {"encoder", "decoder"}


def test_safetensors_weights(tmp_path):
    from safetensors.torch import save_file

    source = TinyVAE(SPECS["taesd3"])
    save_file(source.encoder.state_dict(), str(tmp_path / "enc.safetensors"))
    save_file(source.decoder.state_dict(), str(tmp_path / "dec.safetensors"))
    vae = TinyVAE(SPECS["taesd3"]).load_weights(tmp_path / "enc.safetensors", tmp_path / "dec.safetensors")
    image = torch.rand(1, 3, 16, 16)
    assert torch.allclose(vae.reconstruct(image), source.reconstruct(image))


def test_wrong_vae_weights_named(tmp_path):
    other = TinyVAE(SPECS["taesd"])
    torch.save(other.encoder.state_dict(), tmp_path / "enc.pth")
    torch.save(other.decoder.state_dict(), tmp_path / "dec.pth")
    with pytest.raises(VaeedofError, match="enc.pth: does not fit the taef2 encoder"):
        TinyVAE(SPECS["taef2"]).load_weights(tmp_path / "enc.pth", tmp_path / "dec.pth")


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_never_executed(tmp_path):
    exploit = _Exploit()
    exploit.marker = tmp_path / "pwned"
    torch.save({"weight": exploit}, tmp_path / "evil.pth")
    with pytest.raises(VaeedofError, match="evil.pth: not a loadable weight file"):
        load_state_dict(tmp_path / "evil.pth")
    assert not exploit.marker.exists()


@needs_mirror
def test_taef2_reconstructs_real_photos(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEEDOF_ASSET_MIRROR", str(SHARED_MIRROR))
    vae = load_vae("taef2", tmp_path)
    with torch.no_grad():
        lytro = read_image(REAL / "Lytro/lytro-01/A.jpg")[None]
        assert psnr(vae.reconstruct(lytro), lytro) >= 33.0  # reference implementation: 35.5 dB
        scores = []
        for folder in sorted((REAL / "MFI-WHU").glob("mfiwhu-0*"))[:6]:
            image = read_image(folder / "A.jpg")[None]
            scores.append(psnr(vae.reconstruct(image), image))
    assert 27.0 <= statistics.median(scores) <= 36.0, scores


@needs_mirror
def test_vae_check_command(capsys, monkeypatch):
    from vaeedof.cli import main

    from .conftest import ROOT

    monkeypatch.setenv("VAEEDOF_ASSET_MIRROR", str(SHARED_MIRROR))
    monkeypatch.chdir(ROOT)
    assert main(["vae-check", str(REAL / "Lytro/lytro-01/A.jpg"), "--resources",
                 str(ROOT / "resources")]) == 0
    out = capsys.readouterr().out
    assert "A.jpg" in out and " dB" in out
    value = float(out.split("\t")[1].split()[0])
    assert value > 33.0
