"""Hybrid output: exact input pixels pass through where an input is in focus, every pixel is a
mix of the inputs, the focus term takes fine texture, the reblur term the sharp side of an edge
where the focus term sees a halo; tiled hybrid output has no seams; GFF baseline."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vaeedof.errors import VaeedofError
from vaeedof.evaluation.baselines import guided_filter_fusion, mean_fusion
from vaeedof.fusion.engine import Fuser
from vaeedof.nets.hybrid import (
    HybridSettings,
    compose,
    focus_energy,
    mix_weights,
    reblur_evidence,
    smooth_selection,
)
from vaeedof.nets.unet import FusionUNet, fill_inputs


def _psnr(a, b):
    return 10 * math.log10(1.0 / max(float(((a - b) ** 2).mean()), 1e-12))  # exact copies: 120 dB


def _textured(seed, size=64):
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _blur(image, k=9):
    return F.avg_pool2d(F.pad(image, (k // 2,) * 4, mode="reflect"), k, stride=1)


def _two_focus_stack(size=64):
    """Ground truth, and two inputs each sharp on one half, blurred on the other."""
    gt = _textured(0, size)
    blurred = _blur(gt)
    left, right = blurred.clone(), blurred.clone()
    left[..., : size // 2] = gt[..., : size // 2]
    right[..., size // 2:] = gt[..., size // 2:]
    return gt, torch.stack([left[0], right[0]])[None]


def test_in_focus_pixels_pass_through_exactly_with_untrained_logits():
    gt, inputs = _two_focus_stack()
    decoded = gt + 0.03 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(1))
    logits = torch.zeros(1, 3, 8, 8)  # untrained head: the pixel-level term decides
    out = compose(logits, inputs, decoded.clamp(0, 1), torch.tensor(1.0))
    interior = (..., slice(4, -4), slice(4, 28))  # away from the half boundary and the border
    assert _psnr(out[interior], gt[interior]) > _psnr(decoded[interior], gt[interior]) + 6
    assert _psnr(out, gt) > _psnr(mean_fusion([inputs[0, 0], inputs[0, 1]])[None], gt) + 10


def test_weights_are_convex_and_a_strong_logit_copies_that_input_exactly():
    gt, inputs = _two_focus_stack()
    logits = torch.zeros(1, 3, 8, 8)
    weights = mix_weights(logits, inputs, gt, torch.tensor(1.0))
    assert torch.allclose(weights.sum(1), torch.ones(1, 64, 64), atol=1e-5) and (weights >= 0).all()
    logits[:, 1] = 200.0  # the network is sure: input 1 everywhere
    out = compose(logits, inputs, gt, torch.tensor(1.0))
    assert torch.equal(out, inputs[:, 1])


def test_output_is_a_mix_of_the_inputs_whatever_the_decoded_slot_says():
    gt, inputs = _two_focus_stack()
    logits = torch.zeros(1, 3, 8, 8)
    logits[:, 2] = 200.0  # the head's last (decoded image) slot is no longer read
    out = compose(logits, inputs, torch.zeros_like(gt), torch.tensor(1.0))
    low, high = inputs.min(dim=1).values, inputs.max(dim=1).values
    assert (out >= low - 1e-6).all() and (out <= high + 1e-6).all()


def _fine_texture_stack(size=64):
    """Fine texture (1 px checker) sharp in input 1, smoothed away in input 0; a decoded image
    that, like a VAE on fine texture, looks like the blurred input."""
    checker = ((torch.arange(size)[:, None] + torch.arange(size)[None]) % 2).float()
    sharp = (0.5 + 0.2 * (checker - 0.5)).expand(1, 3, size, size).clone()
    blurred = torch.full_like(sharp, 0.5)
    return sharp, torch.stack([blurred[0], sharp[0]])[None], blurred


def test_focus_term_takes_fine_texture_the_decoded_image_lost():
    sharp, inputs, decoded = _fine_texture_stack()
    logits = torch.zeros(1, 3, 8, 8)
    logits[:, 0] = 2.0  # the coarse decision leans to the blurred input
    off = HybridSettings(radius=2, focus_weight=0.0, focus_floor=3e-4, reblur_weight=0.0, smoothing=0.0)
    on = HybridSettings(radius=2, focus_weight=4.0, focus_floor=3e-4, reblur_weight=0.0, smoothing=0.0)
    assert float(mix_weights(logits, inputs, decoded, torch.tensor(1.0), off)[0, 1].mean()) < 0.2
    assert float(mix_weights(logits, inputs, decoded, torch.tensor(1.0), on)[0, 1].mean()) > 0.99
    assert float((compose(logits, inputs, decoded, torch.tensor(1.0), on) - sharp).abs().max()) < 1e-3


def test_focus_term_does_not_vote_in_flat_regions():
    flat = torch.full((1, 2, 3, 32, 32), 0.5)
    flat[:, 1] += 0.001 * torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert float(focus_energy(flat).max()) < 3e-4  # render-noise level stays under the floor
    logits = torch.zeros(1, 3, 4, 4)
    logits[:, 0] = 3.0
    weights = mix_weights(logits, flat, flat[:, 0], torch.tensor(0.0))
    assert float(weights[0, 0].min()) > 0.9  # the network's choice stands


def _edge_stack(size=64, sigma=3.0):
    """A vertical step edge, sharp in input 1 and defocused (Gaussian, sigma px) in input 0."""
    sharp = torch.full((1, 3, size, size), 0.1)
    sharp[..., size // 2:] = 0.9
    taps = torch.arange(-12, 13, dtype=torch.float32)
    kernel = torch.exp(-taps**2 / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
    blurred = F.conv2d(F.pad(sharp, (12, 12, 0, 0), mode="replicate"), kernel, groups=3)
    return sharp, torch.stack([blurred[0], sharp[0]])[None]


def test_reblur_term_takes_the_sharp_side_of_an_edge_where_the_focus_term_sees_a_halo():
    sharp, inputs = _edge_stack()
    beside = slice(32 + 7, 32 + 10)  # right of the edge, past the sharp input's window
    energy = focus_energy(inputs)[0, :, :, beside]
    assert bool((energy[0] > energy[1]).all())  # the defocused input's spread edge looks sharper
    logits, decoded, agreement = torch.zeros(1, 3, 8, 8), inputs.mean(dim=1), torch.tensor(0.0)
    focus_only = HybridSettings(radius=2, focus_weight=4.0, focus_floor=3e-4, reblur_weight=0.0,
                                smoothing=0.0)
    both = HybridSettings(radius=2, focus_weight=4.0, focus_floor=3e-4, reblur_weight=3.0, smoothing=0.0)
    assert float(mix_weights(logits, inputs, decoded, agreement, focus_only)[0, 1, :, beside].min()) < 0.5
    weights = mix_weights(logits, inputs, decoded, agreement, both)[0, 1]
    assert float(weights[:, beside].min()) > 0.8
    at_edge = slice(32 - 6, 32 + 6)  # where the two inputs differ most
    assert float(weights[:, at_edge].min()) > 0.99
    out = compose(logits, inputs, decoded, agreement, both)
    assert float((out - sharp)[..., at_edge].abs().max()) < 0.01


def test_reblur_evidence_does_not_count_repeated_slots():
    sharp, inputs = _edge_stack()
    evidence = reblur_evidence(inputs)
    filled = reblur_evidence(fill_inputs(inputs, 7))  # slots 0, 1, 0, 1, 0, 1, 0
    assert torch.allclose(filled[:, 0::2], evidence[:, :1].expand_as(filled[:, 0::2]), atol=1e-5)
    assert torch.allclose(filled[:, 1::2], evidence[:, 1:].expand_as(filled[:, 1::2]), atol=1e-5)
    assert torch.allclose(evidence[:, 0], -evidence[:, 1], atol=1e-5)  # two inputs: one vote, both ways
    same = reblur_evidence(torch.stack([sharp[0], sharp[0]])[None])
    assert float(same.abs().max()) == 0.0  # one image twice: nothing to choose


def _decided_halves(size=64, blob=None):
    """Mix weights of two inputs: input 0 on the left half, input 1 on the right, each decided
    (0.98); `blob` (rows, columns): a patch inside the left half decided the wrong way."""
    weights = torch.full((1, 2, size, size), 0.02)
    weights[:, 0, :, : size // 2] = 0.98
    weights[:, 1, :, size // 2:] = 0.98
    if blob is not None:
        weights[(0, 0, *blob)], weights[(0, 1, *blob)] = 0.02, 0.98
    inputs = torch.stack([_textured(1)[0], _textured(2)[0]])[None]
    return weights, inputs


def test_smoothing_outvotes_a_small_blotch_and_keeps_a_focus_boundary():
    blob = (slice(20, 24), slice(12, 16))  # 4x4 px decided for the wrong input
    weights, inputs = _decided_halves(blob=blob)
    smoothed = smooth_selection(weights, inputs, sigma=4.0)
    assert torch.allclose(smoothed.sum(1), torch.ones(1, 64, 64), atol=1e-5) and (smoothed >= 0).all()
    assert float(smoothed[(0, 0, *blob)].min()) > 0.7  # the decided neighbourhood outvotes it
    clean, _ = _decided_halves()
    out = smooth_selection(clean, inputs, sigma=4.0)
    away = [slice(None), slice(0, 32 - 12)], [slice(None), slice(32 + 12, 64)]  # 3 sigma off the boundary
    for side, (rows, columns) in enumerate(away):
        assert torch.allclose(out[0, side, rows, columns], clean[0, side, rows, columns], atol=1e-3)
    assert float(out[0, 0, :, 31].min()) > 0.5 > float(out[0, 0, :, 32].max())  # the boundary stays put


def test_smoothing_counts_repeated_slots_as_one_input():
    blob = (slice(20, 24), slice(12, 16))
    weights, inputs = _decided_halves(blob=blob)
    smoothed = smooth_selection(weights, inputs, sigma=4.0)
    slots = fill_inputs(inputs, 7)  # slots 0, 1, 0, 1, 0, 1, 0: each input's weight split over them
    counts = torch.tensor([4.0, 3.0, 4.0, 3.0, 4.0, 3.0, 4.0]).view(1, 7, 1, 1)
    filled = smooth_selection(weights[:, [0, 1, 0, 1, 0, 1, 0]] / counts, slots, sigma=4.0)
    assert torch.allclose(filled[:, 0::2].sum(1), smoothed[:, 0], atol=1e-5)
    assert torch.allclose(filled[:, 1::2].sum(1), smoothed[:, 1], atol=1e-5)


def test_settings_come_from_params_and_old_checkpoints_get_the_defaults():
    from vaeedof.params import schema_defaults

    fusion = schema_defaults()["fusion"]
    assert HybridSettings.of({"hybrid_radius": 3}).radius == 3
    assert HybridSettings.of({}).focus_weight == fusion["hybrid_focus_weight"] > 0
    assert HybridSettings.of(HybridSettings.of({}).as_dict()) == HybridSettings.of({})


class _TinyVae(torch.nn.Module):
    """A deterministic stand-in for the VAE: 8x average pooling (+ a constant channel) and
    bilinear up-sampling back; the decoded image is a blurred version of the fusion."""

    def encode(self, images):
        pooled = F.avg_pool2d(images, 8)
        return torch.cat([pooled, torch.ones_like(pooled[:, :1])], dim=1)

    def decode(self, latents):
        return F.interpolate(latents[:, :3], scale_factor=8, mode="bilinear", align_corners=False).clamp(0, 1)


def _untrained_fuser(tile, mode):
    torch.manual_seed(0)
    model = FusionUNet(4, max_inputs=3, widths=(8, 16, 32), attention_heads=2)
    return Fuser(model, _TinyVae(), "cpu", tile, mode=mode)


def test_tiled_hybrid_matches_whole_image_without_seams():
    images = [_textured(s, 256)[0] for s in range(3)]
    whole = _untrained_fuser(None, "hybrid").fuse(images)
    tiled = _untrained_fuser(128, "hybrid").fuse(images)
    assert tiled.shape == (3, 256, 256)
    assert _psnr(tiled, whole) > 30
    # No seam: differences across tile borders are like those elsewhere.
    jumps = (tiled[..., 1:] - tiled[..., :-1]).abs().mean(dim=(0, 1))
    assert float(jumps.max()) < 3 * float(jumps.median()) + 0.05


def test_hybrid_handles_one_input_and_more_than_max_inputs():
    fuser = _untrained_fuser(128, "hybrid")
    one = [_textured(7, 64)[0]]
    assert fuser.fuse(one).shape == (3, 64, 64)
    many = [_textured(s, 64)[0] for s in range(8)]  # > max_inputs: hierarchical
    assert fuser.fuse(many).shape == (3, 64, 64)


def test_guided_filter_fusion_keeps_each_sharp_half():
    gt, inputs = _two_focus_stack(128)
    stack = [inputs[0, 0], inputs[0, 1]]
    fused = guided_filter_fusion(stack)
    assert fused.shape == (3, 128, 128)
    assert _psnr(fused, gt[0]) > _psnr(mean_fusion(stack), gt[0]) + 3
    assert np.isfinite(fused.numpy()).all() and fused.min() >= 0 and fused.max() <= 1


def _fast_fuser(view_pixels, quality="fast", mode="hybrid", whole_pixels=None):
    fuser = _untrained_fuser(None, mode)
    fuser.quality, fuser.view_pixels = quality, view_pixels
    fuser.whole_pixels = view_pixels if whole_pixels is None else whole_pixels
    return fuser


def test_fast_path_shrinks_only_large_frames_in_hybrid_mode():
    assert _fast_fuser(128 * 128).decision_scale(128, 128) == 1
    assert _fast_fuser(128 * 128).decision_scale(129, 128) == 2
    assert _fast_fuser(64 * 64).decision_scale(256, 200) == 4  # ceil(sqrt(12.5))
    assert _fast_fuser(64 * 64, whole_pixels=256 * 256).decision_scale(256, 200) == 1
    assert _fast_fuser(64 * 64, whole_pixels=128 * 128).decision_scale(256, 200) == 4
    assert _fast_fuser(64 * 64, quality="max").decision_scale(256, 256) == 1
    assert _fast_fuser(64 * 64, mode="latent").decision_scale(256, 256) == 1


def test_benchmark_collections_take_the_max_path():
    """Lytro (520 x 520), MFFW and MFI-WHU (up to 900 x 600) and gt-stacks (512 x 512, at most 7
    frames): no frame is shrunk and no stack merged, so the fast path is the max path there."""
    from vaeedof.fusion.engine import Fuser

    fuser = Fuser(FusionUNet(4, max_inputs=7, widths=(8, 16, 32), attention_heads=2), _TinyVae(), "cpu",
                  mode="hybrid")
    assert fuser.quality == "fast"
    for height, width in ((520, 520), (580, 780), (600, 900), (512, 512), (768, 768)):
        assert fuser.decision_scale(height, width) == 1
    assert not fuser.merges_by_focus(7) and fuser.merges_by_focus(8)
    assert fuser.decision_scale(1536, 2048) == 4  # pcb: 512 x 384 views
    stack = [_textured(s, 96)[0] for s in range(3)]
    fast = fuser.fuse(stack)
    fuser.quality = "max"
    assert torch.equal(fast, fuser.fuse(stack))


def test_fast_path_network_sees_shrunk_views_and_pixels_stay_exact():
    """The network encodes views half the size; the output is still a per-pixel convex mix of
    the full-resolution inputs, takes each sharp half, and a stack of copies passes through."""
    gt, inputs = _two_focus_stack(256)
    stack = [inputs[0, 0], inputs[0, 1]]
    fuser = _fast_fuser(128 * 128)
    seen = []
    encode = fuser.vae.encode
    fuser.vae.encode = lambda images: seen.append(tuple(images.shape[-2:])) or encode(images)
    fast = fuser.fuse(stack)
    assert fast.shape == (3, 256, 256) and set(seen) == {(128, 128)}
    low, high = inputs[0].min(0).values, inputs[0].max(0).values
    assert (fast >= low - 1e-5).all() and (fast <= high + 1e-5).all()
    assert _psnr(fast, gt[0]) > _psnr(mean_fusion(stack), gt[0]) + 6
    copies = [inputs[0, 0]] * 3
    assert torch.allclose(fuser.fuse(copies), inputs[0, 0], atol=1e-5)


def test_fast_path_regions_match_one_region(monkeypatch):
    """Full-resolution compose regions with their halo give what one region over the whole
    image gives (odd sizes: padded to the view grid and cropped back)."""
    from vaeedof.fusion import engine

    stack = [_textured(s, 256)[0][:, :250, :190] for s in range(3)]
    stack[1] = _blur(stack[1][None])[0]
    fuser = _fast_fuser(64 * 64)
    monkeypatch.setattr(engine, "COMPOSE_TILE", 4096)
    whole, merged_whole = fuser.fuse(stack), fuser.merge_by_focus(stack, 2)
    monkeypatch.setattr(engine, "COMPOSE_TILE", 64)
    regions, merged_regions = fuser.fuse(stack), fuser.merge_by_focus(stack, 2)
    assert regions.shape == whole.shape == merged_regions.shape == (3, 250, 190)
    assert float((regions - whole).abs().max()) < 1e-4
    assert float((merged_regions - merged_whole).abs().max()) < 1e-4


def test_fast_path_merges_deep_stacks_by_focus_before_the_network():
    """Beyond max_inputs frames the fast path merges neighbouring frames by the pixel terms and
    the network sees only the merged frames; the max path fuses every group with the network."""
    gt, inputs = _two_focus_stack(128)
    blurred = _blur(gt, 5)[0]
    left, right = inputs[0, 0], inputs[0, 1]
    stack = [left, blurred, blurred, left, blurred, right, blurred, blurred, right]
    counts = {}
    for quality in ("fast", "max"):
        fuser = _fast_fuser(1 << 30, quality)
        seen = []
        encode = fuser.vae.encode
        fuser.vae.encode = lambda images, seen=seen, encode=encode: seen.append(1) or encode(images)
        fused = fuser.fuse(stack)
        counts[quality] = len(seen)
        assert _psnr(fused, gt[0]) > _psnr(mean_fusion(stack), gt[0]) + 6, quality
    assert fuser.merges_by_focus(9) is False and _fast_fuser(1 << 30).merges_by_focus(9)
    assert not _fast_fuser(1 << 30).merges_by_focus(3)
    assert counts == {"fast": 3, "max": 9 + 3}  # max: every frame, then the three group results
    merged, names = _fast_fuser(1 << 30).merge_deep(stack, names=[f"f{i}.png" for i in range(9)])
    assert len(merged) == 3 and names == ["f0.png..f2.png", "f3.png..f5.png", "f6.png..f8.png"]


def test_deep_stack_network_and_vae_check_see_the_merged_frames(tmp_path, monkeypatch):
    from vaeedof.fusion import files
    from vaeedof.images import LoadedImage

    checked = []
    monkeypatch.setattr(files, "check_inputs", lambda vae, named, db, latents: checked.extend(
        (name, len(latents)) for name, _ in named))
    frames = [(_textured(s, 64)[0] * 255).to(torch.uint8) for s in range(9)]
    loaded = [LoadedImage(frame, 8, None, tmp_path / f"f{i}.png") for i, frame in enumerate(frames)]
    files.write_fused(_fast_fuser(1 << 30), loaded, tmp_path / "out.png", 20.0, align="off")
    assert (tmp_path / "out.png").is_file()
    expected = [f"{tmp_path / f'f{i}.png'}..f{i + 2}.png" for i in (0, 3, 6)]
    assert [name for name, _ in checked] == expected
    assert {count for _, count in checked} == {3}


def test_focus_index_says_which_frame_each_pixel_took():
    """Both paths and a deep stack: the index is 0 where the first frame is sharp, the last
    frame's where it is, and the image is the plain output bit for bit."""
    gt, inputs = _two_focus_stack(128)
    left, right = inputs[0, 0], inputs[0, 1]
    blurred = _blur(gt, 5)[0]
    inner = (slice(8, -8), slice(8, 56)), (slice(8, -8), slice(72, -8))  # away from the boundary
    for quality, stack in [("fast", [left, right]), ("max", [left, blurred, right]),
                           ("fast", [left, left, blurred, blurred, blurred, blurred, blurred, right, right])]:
        fuser = _fast_fuser(1 << 30, quality)
        fuser.model.max_inputs = 3 if len(stack) > 3 else fuser.model.max_inputs
        image, index, confidence = fuser.fuse_with_focus_index(stack)
        assert torch.equal(image, fuser.fuse(stack)), quality
        assert index.shape == (128, 128) and float(index.min()) >= 0 and float(index.max()) <= len(stack) - 1
        assert torch.equal(index, index.round())  # a frame, not a blend of frame numbers
        assert float(confidence.min()) >= 0 and float(confidence.max()) <= 1 + 1e-6
        assert float(confidence[inner[0]].mean()) > float(confidence[:, 62:66].mean())  # the focus edge
        assert float(index[inner[0]].mean()) < 0.25 * (len(stack) - 1), (quality, len(stack))
        assert float(index[inner[1]].mean()) > 0.75 * (len(stack) - 1), (quality, len(stack))
    latent = _untrained_fuser(None, "latent")
    with pytest.raises(VaeedofError, match="needs the hybrid output"):
        latent.fuse_with_focus_index([left, right])
