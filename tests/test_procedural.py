import numpy as np

from vaeedof.assets import procedural
from vaeedof.assets.build import check_disjoint
from vaeedof.assets.hdr import read_hdr, write_hdr
from vaeedof.errors import VaeedofError


def _gradient_energy(rgb: np.ndarray) -> np.ndarray:
    grey = rgb.astype(np.float64).mean(axis=-1)
    gy, gx = np.gradient(grey)
    return gx**2 + gy**2


def test_subjects_have_soft_mattes_and_texture_everywhere():
    rng = np.random.default_rng(1)
    for _ in range(6):
        rgba = procedural.subject(rng, 128)
        alpha = rgba[..., 3]
        assert rgba.shape == (128, 128, 4)
        assert (alpha == 255).mean() > 0.15 and (alpha == 0).mean() > 0.1
        assert ((alpha > 0) & (alpha < 255)).sum() > 50  # soft edge, not a hard cut
        # Texture everywhere inside: every 16x16 block of the opaque interior has detail.
        energy = _gradient_energy(rgba[..., :3])
        for y in range(0, 128, 16):
            for x in range(0, 128, 16):
                if (alpha[y:y + 16, x:x + 16] == 255).all():
                    assert energy[y:y + 16, x:x + 16].mean() > 2.0


def test_backgrounds_are_textured_and_sized():
    rng = np.random.default_rng(2)
    image = procedural.background_image(rng, 200)
    assert image.size == (200, 200) and image.mode == "RGB"
    assert _gradient_energy(np.asarray(image)).mean() > 5.0


def test_hdri_round_trip(tmp_path):
    env = procedural.hdri(np.random.default_rng(3), 64)
    assert env.shape == (32, 64, 3) and env.max() > 1.0  # high dynamic range
    write_hdr(tmp_path / "env.hdr", env)
    back = read_hdr(tmp_path / "env.hdr")
    assert np.allclose(back, env, rtol=0.02, atol=1e-3)


def test_procedural_is_deterministic():
    a = procedural.subject(np.random.default_rng(5), 64)
    b = procedural.subject(np.random.default_rng(5), 64)
    assert np.array_equal(a, b)


def test_disjoint_check_catches_shared_subject():
    entry = {"sha256": "abc", "path": "x.png"}
    try:
        check_disjoint({"subjects": {"train": [entry], "test": [dict(entry, path="y.png")]}})
    except VaeedofError as exc:
        assert "y.png" in str(exc)
    else:
        raise AssertionError("shared subject not detected")


def test_asset_index_build_is_idempotent(params, tmp_path, monkeypatch):
    from vaeedof.assets.build import build, index_is_current

    monkeypatch.chdir(tmp_path)
    index_path = build(params, "resources")
    first = index_path.read_bytes()
    assert index_is_current(index_path, params)
    # A tampered asset is detected and regenerated.
    subject = tmp_path / "resources/assets/subjects/train/subject_0000.png"
    subject.write_bytes(b"tampered")
    assert not index_is_current(index_path, params)
    build(params, "resources")
    assert index_path.read_bytes() == first
