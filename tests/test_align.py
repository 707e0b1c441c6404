"""Aligning hand-held focus stacks: synthetic warps with known parameters, low texture, exposure
drift, frames in random order, registered stacks left alone (also where defocus moves what it
blurs), the CLI."""

import json
import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from vaeedof.cli import main
from vaeedof.errors import VaeedofError
from vaeedof.fusion import align
from vaeedof.fusion.align import align_stack, estimate, motion_evidence, needs_alignment
from vaeedof.fusion.exposure import exposure_gain

from .conftest import SHARED_MIRROR

PHOTO = SHARED_MIRROR.parent / "data" / "real" / "Lytro" / "lytro-01" / "A.jpg"


def _source(side=512, low_texture=False):
    """A photograph crop (or, without the mirror, a textured pattern)."""
    if low_texture:  # a smooth wall: gradients and a faint fine texture (2 % contrast)
        y, x = np.mgrid[0:side, 0:side] / side
        image = np.stack([0.4 + 0.3 * x, 0.5 + 0.2 * y, 0.5 + 0.1 * np.sin(6 * x + 3 * y)], -1)
        noise = np.random.default_rng(1).random((side, side)).astype(np.float32)
        grain = cv2.GaussianBlur(noise, (0, 0), 1.5)
        image += 0.02 * (grain - grain.mean())[..., None] / grain.std()
        return np.clip(image, 0, 1).astype(np.float32)
    if PHOTO.exists():
        return np.asarray(Image.open(PHOTO).convert("RGB"), np.float32)[:side, :side] / 255
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.random((side, side, 3)).astype(np.float32), (0, 0), 2)


def _similarity(scale, angle_deg, tx, ty, side):
    """3x3 map about the image centre; a frame made with it holds source(M p) at p."""
    c = (side - 1) / 2
    a = math.radians(angle_deg)
    cos, sin = scale * math.cos(a), scale * math.sin(a)
    rot = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
    to_centre = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]])
    return np.linalg.inv(to_centre) @ rot @ to_centre + np.array([[0, 0, tx], [0, 0, ty], [0, 0, 0]])


def _stack(source, transforms, blurs, gains=None):
    side = source.shape[0]
    frames = []
    for k, (matrix, blur) in enumerate(zip(transforms, blurs, strict=True)):
        image = cv2.GaussianBlur(source, (0, 0), blur) if blur else source
        warped = cv2.warpAffine(image, matrix[:2], (side, side), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REFLECT)
        if gains is not None:
            warped = np.clip(warped * gains[k], 0, 1)
        frames.append(torch.from_numpy(np.ascontiguousarray(warped)).permute(2, 0, 1))
    return frames


def _rms_residual(estimated, true, side):
    """Largest per-frame RMS distance (px) between where the estimated and the true transforms
    put the reference's pixels in a frame. `true`: the maps used to make the frames (frame k
    holds source(M_k p)), so reference -> frame is their inverse."""
    true = [np.linalg.inv(m) for m in true]
    y, x = np.mgrid[0:side:16, 0:side:16]
    points = np.stack([x.ravel(), y.ravel(), np.ones(x.size)])
    errors = []
    for e, t in zip(estimated, true, strict=True):
        pe, pt = e @ points, t @ points
        errors.append(np.sqrt(np.mean(np.sum((pe[:2] / pe[2] - pt[:2] / pt[2]) ** 2, axis=0))))
    return max(errors)


def _hand_held(side, seed=0, count=5):
    """Focus breathing (scale drifting up to 3 %) and shake (4 px, 0.5 degree); the middle frame
    is the reference (identity)."""
    rng = np.random.default_rng(seed)
    transforms = []
    for k in range(count):
        if k == (count - 1) // 2:
            transforms.append(np.eye(3))
            continue
        scale = 1 + 0.03 * (k - (count - 1) // 2) / (count // 2)
        transforms.append(_similarity(scale, rng.uniform(-0.5, 0.5), *rng.uniform(-4, 4, 2), side))
    return transforms


def test_synthetic_hand_held_warps_are_recovered_to_a_tenth_of_a_pixel():
    side = 512
    true = _hand_held(side)
    frames = _stack(_source(side), true, blurs=[0, 1.5, 0, 2.0, 1.0])
    alignment = estimate(frames, [f"f{k}" for k in range(5)])
    assert alignment.reference == 2 and needs_alignment(alignment)
    assert _rms_residual(alignment.transforms, true, side) < 0.1
    assert alignment.max_shift_px > 4
    scales = [json_frame["scale"] for json_frame in alignment.as_json([f"f{k}" for k in range(5)])["frames"]]
    assert scales[0] > 1.02 and scales[-1] < 0.98  # focus breathing, explicit


def test_low_texture_frames_align():
    side = 384
    true = _hand_held(side, seed=1, count=3)
    frames = _stack(_source(side, low_texture=True), true, blurs=[0, 1.0, 0])
    alignment = estimate(frames, ["a", "b", "c"])
    assert _rms_residual(alignment.transforms, true, side) < 0.2


def test_exposure_drift_is_matched_and_frames_in_random_order_align():
    side = 384
    true = _hand_held(side, seed=2)
    gains = [1.0, 1.08, 1.0, 0.93, 1.04]
    frames = _stack(_source(side), true, blurs=[0, 1.0, 0, 1.5, 0.5], gains=gains)
    order = [3, 0, 4, 2, 1]
    shuffled = [frames[k] for k in order]
    alignment = estimate(shuffled, [f"f{k}" for k in order])
    reference = order[alignment.reference]
    relative = [np.linalg.inv(true[reference]) @ true[k] for k in order]  # frames from frame `reference`
    assert _rms_residual(alignment.transforms, relative, side) < 0.15
    for k, gain in zip(order, alignment.gains, strict=True):
        assert np.allclose(gain, gains[reference] / gains[k], atol=0.015), (k, gain)


def test_registered_stack_is_left_untouched_bit_for_bit():
    """Defocus differs between the frames, nothing moved: no shift may be invented."""
    side = 512
    source = _source(side)
    frames = [torch.from_numpy(np.ascontiguousarray(cv2.GaussianBlur(source, (0, 0), b) if b else source)
                               ).permute(2, 0, 1) for b in (0, 1.0, 2.0)]
    assert not any(pair.confirmed for pair in motion_evidence(frames, ["a", "b", "c"]))
    aligned, alignment = align_stack(frames, ["a", "b", "c"], "auto")
    assert alignment is None and all(a is f for a, f in zip(aligned, frames, strict=True))
    # Even a full fit finds no motion worth a warp here.
    assert estimate(frames, ["a", "b", "c"]).max_shift_px < 0.1
    assert align_stack(frames, ["a", "b", "c"], "off") == (frames, None)


def test_registered_stack_with_an_exposure_change_is_matched_without_resampling():
    """A camera that re-meters between focus frames (MFFW pairs differ by 3-10 %): `auto` matches
    the gain even though nothing moved, and touches nothing else; a 1 % change is left alone
    (defocus alone shifts flat regions of registered renders that much)."""
    side = 384
    source = _source(side)
    frames = [torch.from_numpy(np.ascontiguousarray(cv2.GaussianBlur(source, (0, 0), b) if b else source)
                               ).permute(2, 0, 1) for b in (0, 1.5, 3.0)]
    darker = frames[:2] + [(frames[2] * 0.92).clamp(0, 1)]
    aligned, alignment = align_stack(darker, ["a", "b", "c"], "auto")
    assert alignment is not None and alignment.max_shift_px == 0
    assert all(np.array_equal(t, np.eye(3)) for t in alignment.transforms)
    assert np.allclose(alignment.gains[0], 1) and np.allclose(alignment.gains[2], 1 / 0.92, atol=0.01)
    assert aligned[0] is darker[0] and aligned[1] is darker[1]
    gain = torch.from_numpy(alignment.gains[2].astype(np.float32))[:, None, None]
    assert torch.equal(aligned[2], (darker[2] * gain).clamp(0, 1))  # gained, not resampled
    barely = frames[:2] + [(frames[2] * 0.99).clamp(0, 1)]
    kept, none = align_stack(barely, ["a", "b", "c"], "auto")
    assert none is None and all(a is f for a, f in zip(kept, barely, strict=True))


def test_a_gain_counts_only_when_it_is_the_same_from_dark_to_bright():
    """Smooth ramps from dark to bright, repeated in every cell, so that place cannot tell the
    two apart: one gain is read; another tone curve (mid-tones darker, white kept, as cameras
    differ) is refused although its ratios spread little and every cell agrees."""
    side = 240  # the 3 x 3 cells hold two whole 40 px ramps each
    ramp = 0.3 + 0.6 * (np.arange(side) % 40) / 40
    target = np.repeat(np.tile(ramp, (side, 1))[..., None], 3, axis=2).astype(np.float32)
    assert np.allclose(exposure_gain(target * 0.95, target), 1 / 0.95, atol=0.005)
    assert exposure_gain(target ** 1.064, target) is None


def test_light_that_defocus_moves_is_not_taken_for_exposure():
    """A frame focused elsewhere spreads a bright object's light over its neighbourhood (from
    beyond the frame's edge too): its colour means differ from the reference's, but not by one
    gain everywhere, so no gain may tint it (a mean-matching gain cost 9 dB on a rendered stack)."""
    canvas = _source(320) * 0.6
    canvas[:80, :80] = (1.0, 0.9, 0.3)  # a bright yellow object, mostly beyond the frame's corner
    view = (slice(64, 320), slice(64, 320))
    sharp, blurred = canvas[view], cv2.GaussianBlur(canvas, (0, 0), 24)[view]  # focused near / far
    frames = [torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1) for f in (blurred, sharp, blurred)]
    alignment = estimate(frames, ["near", "reference", "far"])
    assert all(np.allclose(g, 1.0) for g in alignment.gains)
    # The same frames under a real exposure change (one gain everywhere) are matched.
    darker = [frames[0], frames[1], (frames[1] * 0.9).clamp(0, 1)]
    assert np.allclose(estimate(darker, ["a", "b", "c"]).gains[2], 1 / 0.9, atol=0.01)


def test_align_command_and_unalignable_frame(tmp_path, capsys):
    side = 256
    frames = _stack(_source(side), _hand_held(side, seed=3, count=3), blurs=[0, 1, 0])
    for k, frame in enumerate(frames):
        pixels = (frame.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"f{k}.png")
    assert main(["align", str(tmp_path / "f*.png"), "-o", str(tmp_path / "aligned")]) == 0
    capsys.readouterr()
    transforms = json.loads((tmp_path / "aligned" / "transforms.json").read_text())
    assert transforms["reference"] == "f1.png" and len(transforms["frames"]) == 3
    assert sorted(p.name for p in (tmp_path / "aligned").glob("*.png")) == ["f0.png", "f1.png", "f2.png"]
    rng = np.random.default_rng(5)
    for name in ("n0.png", "n1.png"):  # unrelated noise: nothing to register
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), np.uint8)).save(tmp_path / name)
    code = main(["align", str(tmp_path / "n0.png"), str(tmp_path / "n1.png"), "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "n1.png: cannot be aligned" in err[0] and "--align off" in err[0]
    with pytest.raises(VaeedofError, match="motion model"):
        estimate(frames, ["a", "b", "c"], "projective")


def test_auto_fuses_a_moved_stack_it_cannot_align_with_a_warning(caplog, monkeypatch):
    """`auto` never stops a fusion: frames that moved (forced here) but do not match are fused as
    they are, with a warning; `on` (and the evaluation's strict mode) stop with one line."""
    moved = align.PairEvidence(("n0", "n1"), 5.0, 100, 1.0, 5.0)  # forced: as if they had moved
    monkeypatch.setattr(align, "motion_evidence", lambda images, names, shrunk=None: [moved])
    logger = align.get_logger()  # the CLI's logger does not propagate: listen to it directly
    logger.addHandler(caplog.handler)
    monkeypatch.setattr(logger, "level", 0)
    rng = np.random.default_rng(7)
    frames = [torch.from_numpy(rng.random((3, 256, 256), dtype=np.float32)) for _ in range(2)]
    aligned, alignment = align_stack(frames, ["n0", "n1"], "auto")
    assert alignment is None and all(a is f for a, f in zip(aligned, frames, strict=True))
    logger.removeHandler(caplog.handler)
    assert "n1: cannot be aligned to n0" in caplog.text and "--align on makes this an error" in caplog.text
    for kwargs in ({"mode": "on"}, {"mode": "auto", "strict": True}):
        with pytest.raises(VaeedofError, match="n1: cannot be aligned"):
            align_stack(frames, ["n0", "n1"], **kwargs)


def test_fuse_logs_the_exposure_it_matched(tmp_path, capfd, monkeypatch):
    """`vaeedof fuse` on a stack that did not move but whose exposure changed says so in its
    alignment line (a displacement of 0 px alone would hide that the frames were changed)."""
    import vaeedof.fusion.loader as loader
    from vaeedof.fusion.engine import Fuser
    from vaeedof.nets.unet import FusionUNet

    from .synthetic import random_vae

    monkeypatch.setattr(loader, "load_fuser", lambda *args, **kwargs: Fuser(
        FusionUNet(16, 7, (16, 32, 64), 2), random_vae(), "cpu"))
    source = _source(256)
    for name, image in (("a.png", source), ("b.png", cv2.GaussianBlur(source, (0, 0), 2) * 0.9)):
        Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    assert main(["fuse", "a.png", "b.png", "-o", "o.png"]) == 0
    line = next(x for x in capfd.readouterr().err.splitlines() if "alignment:" in x)
    assert "largest displacement 0.00 px" in line and "frames aligned" in line
    change = float(line.split("largest exposure change ")[1].split(" %")[0])
    assert 9 < change < 13, line  # b gained by 1 / 0.9 (11 %)


GT_STACKS = SHARED_MIRROR.parent / "data" / "gt-stacks"


def _disc_defocus(image, radius):
    """Defocus as a disc whose kernel is not centred: it moves what it blurs by about `radius`
    px along the diagonal (as an off-centre or asymmetric blur disc does; gt-stacks shows it)."""
    if radius < 1:
        return np.roll(image, (1, 1), (0, 1)) if radius > 0 else image
    size = 2 * math.ceil(radius) + 1
    y, x = np.mgrid[:size, :size] - size // 2
    kernel = (x * x + y * y <= radius * radius + 0.5).astype(np.float32)
    kernel /= kernel.sum()
    return cv2.filter2D(image, -1, kernel, anchor=(0, 0), borderType=cv2.BORDER_REFLECT)


def test_defocus_that_moves_what_it_blurs_is_not_warped_by_auto(caplog):
    """A registered layered stack whose defocus displaces the layers it blurs (by up to 3 px, and
    a near-sharp background by 1 px): a fit over all blocks reads that as motion, `auto` finds no
    motion in detail sharp in both frames, leaves the frames in place and says so in one line."""
    side = 256
    background = _source(side)
    near = np.ascontiguousarray(np.rot90(_source(side)) * [1.0, 0.7, 0.5]).astype(np.float32)
    mask = np.zeros((side, side, 1), np.float32)
    mask[64:192, 48:160] = 1
    frames = []
    for near_radius, far_radius in ((0, 3), (1.5, 0.5), (3, 0)):  # focused near, between, far
        alpha = _disc_defocus(mask[..., 0], near_radius)[..., None]
        frame = alpha * _disc_defocus(near, near_radius) + (1 - alpha) * _disc_defocus(background, far_radius)
        frames.append(torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1), np.float32)))
    names = ["near", "between", "far"]
    assert estimate(frames, names).max_shift_px > 1  # the trap: a fit over every block sees motion
    logger = align.get_logger()
    logger.addHandler(caplog.handler)
    try:
        aligned, alignment = align_stack(frames, names, "auto")
    finally:
        logger.removeHandler(caplog.handler)
    assert alignment is None and all(a is f for a, f in zip(aligned, frames, strict=True))
    lines = [r.getMessage() for r in caplog.records if "apparent motion" in r.getMessage()]
    assert len(lines) == 1 and "--align on" in lines[0], lines


def _gt_stack_dirs(size: str) -> list:
    return sorted(p for p in (GT_STACKS / size).glob("s*") if p.is_dir())


@pytest.mark.skipif(not GT_STACKS.is_dir(), reason="no gt-stacks beside the project (../shared/data)")
def test_a_gt_stack_frame_moved_by_hand_is_detected_and_aligned():
    """Hand-held copies of each gt-stack's far-focus frame (shifted 2-5 px, rotated 0.3-1 degree;
    the middle copy in place): `auto` finds the motion in every stack and aligns to within 0.2 px
    RMS; one frame that is mostly clear sky (s256/s06) holds too little texture for that, so one
    stack may reach 0.3 px."""
    errors = {}
    for index, stack in enumerate(_gt_stack_dirs("s256") + _gt_stack_dirs("s512")):
        rng = np.random.default_rng(index)
        far_focus = sorted(stack.glob("focus_*.png"))[-1]
        source = np.asarray(Image.open(far_focus).convert("RGB"), np.float32) / 255
        side = source.shape[0]
        true = []
        for k in range(3):
            length, direction = rng.uniform(2, 5), rng.uniform(0, 2 * math.pi)
            angle = rng.uniform(0.3, 1.0) * rng.choice([-1, 1])
            true.append(np.eye(3) if k == 1 else _similarity(1.0, angle, length * math.cos(direction),
                                                             length * math.sin(direction), side))
        frames = _stack(source, true, blurs=[0, 0, 0])
        aligned, alignment = align_stack(frames, ["a", "b", "c"], "auto")
        name = f"{stack.parent.name}/{stack.name}"
        assert alignment is not None and alignment.applied, f"{name}: motion not detected"
        errors[name] = _rms_residual(alignment.transforms, true, side)
    assert len(errors) == 20 and max(errors.values()) < 0.3, errors
    assert sum(error < 0.2 for error in errors.values()) >= len(errors) - 1, errors


def _fuse_default_and_off(stack, tmp_path, monkeypatch) -> tuple[bytes, bytes]:
    """`vaeedof fuse` with the default alignment and with `--align off`, through the CLI (a small
    random network stands in for the release model: only the frames it is given matter here)."""
    import vaeedof.fusion.loader as loader
    from vaeedof.fusion.engine import Fuser
    from vaeedof.nets.unet import FusionUNet

    from .synthetic import random_vae

    monkeypatch.setattr(loader, "load_fuser", lambda *args, **kwargs: Fuser(
        FusionUNet(16, 7, (16, 32, 64), 2), random_vae(), "cpu"))
    frames = [str(p) for p in sorted(stack.glob("focus_*.png"))]
    outputs = []
    for name, options in (("default.png", []), ("off.png", ["--align", "off"])):
        torch.manual_seed(0)
        assert main(["fuse", *options, *frames, "-o", str(tmp_path / name)]) == 0
        outputs.append((tmp_path / name).read_bytes())
    return outputs[0], outputs[1]


@pytest.mark.skipif(not GT_STACKS.is_dir(), reason="no gt-stacks beside the project (../shared/data)")
@pytest.mark.parametrize("size", ["s256", pytest.param("s512", marks=pytest.mark.slow)])
def test_default_fuse_equals_align_off_on_every_registered_gt_stack(size, tmp_path, monkeypatch, capsys):
    """The frames of gt-stacks never moved: the default output is the `--align off` one, bit for bit."""
    stacks = _gt_stack_dirs(size)
    assert stacks
    different = [stack.name for stack in stacks
                 if len(set(_fuse_default_and_off(stack, tmp_path, monkeypatch))) > 1]
    assert not different, f"{size}: the default warped {different}"


def test_the_alignment_docs_table_is_generated_from_its_csv(tmp_path, capsys):
    """docs/alignment.md's table is `experiments/handheld/align_decisions.py`'s CSV, regenerated by `vaeedof
    readme`: the committed pair agrees, and a changed decision makes the table stale."""
    import csv
    import shutil

    from .conftest import ROOT

    for name in ("alignment.md", "alignment-decisions.csv"):
        shutil.copy(ROOT / "docs" / name, tmp_path / name)
    doc = str(tmp_path / "alignment.md")
    assert main(["readme", doc, "--check"]) == 0
    with open(tmp_path / "alignment-decisions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    registered = [row for row in rows if row["kind"] == "registered"]
    assert len(registered) >= 20 and not any(int(row["warped"]) for row in registered)  # as recorded
    registered[0]["warped"] = "1"
    from vaeedof import atomic

    atomic.write_csv(tmp_path / "alignment-decisions.csv", rows, list(rows[0]))
    capsys.readouterr()
    assert main(["readme", doc, "--check"]) == 2 and "align-decisions" in capsys.readouterr().err
    assert main(["readme", doc]) == 0
    count = sum(row["set"] == registered[0]["set"] for row in rows)
    assert f"| {registered[0]['set']} | registered | {count} | 1 |" in (tmp_path / "alignment.md").read_text()


def test_the_align_help_states_the_thresholds_the_code_uses():
    from vaeedof.cli import build_parser
    from vaeedof.fusion.evidence import EVIDENT_MOTION_PX
    from vaeedof.fusion.exposure import MIN_GAIN

    fuse = build_parser()._subparsers._group_actions[0].choices["fuse"]
    text = " ".join(next(a for a in fuse._actions if "--align" in a.option_strings).help.split())
    assert f"{EVIDENT_MOTION_PX:g} px" in text and f"{MIN_GAIN:.0%}" in text, text
