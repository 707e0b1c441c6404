"""Focus stacks made from a photograph (`experiments/photo_stacks/stacks.py`): the defocus they model
is the one described, so that scores against the photograph mean what they say."""

import numpy as np
import pytest
from PIL import Image

from experiments.photo_stacks import stacks as ps


def _texture(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size, 3)).astype(np.float32)


def test_the_disc_is_the_thin_lens_blur_of_the_radius_given():
    kernel = ps.disc_kernel(3.0)
    assert kernel.shape == (9, 9) and kernel.sum() == pytest.approx(1.0)
    assert kernel[4, 4] == kernel.max() and kernel[4, 0] == 0 and kernel[4, 1] > 0  # 3 px from the centre
    image = _texture(32)
    assert ps.disc_blur(image, 0.4) is image  # under half a pixel: the pixel itself
    assert np.abs(ps.disc_blur(image, 3.0) - image).mean() > 0.1


def test_blur_radii_follow_the_inverse_depth():
    depths = np.array([10.0, 5.0, 1.0])  # far to near
    on_far = ps.blur_radii(depths, 10.0, 8.0)
    assert on_far == pytest.approx([0.0, 8.0 * (0.2 - 0.1) / 0.9, 8.0])
    assert ps.blur_radii(depths, 5.0, 8.0)[1] == 0.0


def test_an_out_of_focus_near_plane_veils_what_is_behind_it():
    size = 96
    sharp = _texture(size)
    near = np.zeros((size, size), np.float32)
    near[:, 48:] = 1.0  # the right half is a near plane
    masks, depths = [np.ones((size, size), np.float32), near], np.array([10.0, 1.0])
    on_far = ps.layered_frame(sharp, masks, depths, 10.0, 6.0)
    on_near = ps.layered_frame(sharp, masks, depths, 1.0, 6.0)
    np.testing.assert_allclose(on_far[:, :40], sharp[:, :40], atol=1e-5)  # the background, sharp
    np.testing.assert_allclose(on_near[:, 56:], sharp[:, 56:], atol=1e-5)  # the near plane, sharp
    blurred = ps.disc_blur(sharp, 6.0)
    np.testing.assert_allclose(on_far[:, 56:], blurred[:, 56:], atol=1e-5)
    # Just left of the edge the near plane's blur spills over the sharp background; the near
    # plane in focus hides nothing behind its edge.
    veil = np.abs(on_far[:, 43:47] - sharp[:, 43:47]).mean()
    assert veil > 0.05
    np.testing.assert_allclose(on_near[:, :42], blurred[:, :42], atol=1e-5)


def test_a_layered_stack_is_one_frame_per_plane_seeded():
    photo = Image.fromarray((_texture(300, 1) * 255).astype(np.uint8))

    def make(seed):
        return ps.layered_stack(photo, np.random.default_rng(seed), 64, 4.0, planes=(2, 5))

    gt, frames = make(3)
    assert gt.shape == (3, 64, 64) and gt.dtype.is_floating_point and 0 <= gt.min() and gt.max() <= 1
    assert 2 <= len(frames) <= 5 and all(f.shape == (3, 64, 64) and f.dtype.itemsize == 1 for f in frames)
    again_gt, again = make(3)
    assert (again_gt == gt).all() and all((a == b).all() for a, b in zip(again, frames, strict=True))
    assert any((a != b).any() for a, b in zip(frames, frames[1:], strict=False))
    counts = {len(make(seed)[1]) for seed in range(12)}
    assert counts <= {2, 3, 4, 5} and len(counts) > 1


def test_the_summary_counts_the_stacks_above_gff():
    rows = [{"stack": s, "planes": 2, "method": m, "psnr": p, "ssim": q}
            for s, m, p, q in [("a", "gff", 30.0, 0.9), ("b", "gff", 34.0, 0.95),
                               ("a", "hybrid", 31.0, 0.92), ("b", "hybrid", 35.0, 0.96)]]
    lines = ps.summary(rows)
    assert lines[2] == "| gff | 2 | 32.00 | 0.9250 | 0 | - |"
    assert lines[3] == "| hybrid | 2 | 33.00 | 0.9400 | 0 | 2 of 2 |"


def test_the_latent_gap_pools_error_by_distance_to_a_plane_edge():
    from experiments.latent_gap.gap import GapAccumulator, bin_labels, edge_bins, edge_distance, summary

    index = np.zeros((8, 100), np.uint8)
    index[:, 50:] = 1
    distance = edge_distance(index)
    assert distance[0, 49] == 0 and distance[0, 50] == 0 and distance[0, 40] == pytest.approx(9, abs=0.1)
    assert np.isinf(edge_distance(np.zeros((4, 4), np.uint8))).all()
    bins = edge_bins(index)
    assert bins[0, 49] == 0 and bins[0, 40] == 1 and bins[0, 99] == 3 and (bins < 4).all()
    gt = np.zeros((8, 100, 3), np.float32)
    image = gt.copy()
    image[:, 45:55] = 0.1  # wrong only within 5 px of the edge: 20 dB there
    gap = GapAccumulator()
    gap.add_scene(bins)
    gap.add("m", bins, image, gt)
    rows = gap.rows("s")
    assert [r["bin"] for r in rows] == bin_labels() == ["0-8 px", "8-16 px", "16-32 px", "32-64 px", "64+ px"]
    first = rows[0]
    assert first["psnr"] == pytest.approx(10 * np.log10(16 / (10 * 0.01)), abs=0.01)
    assert first["error_share"] == 1
    assert first["pixel_share"] == pytest.approx(16 / 100) and np.isnan(rows[4]["psnr"])
    assert summary(rows)[0].startswith("| split | method | 0-8 px (16%) | 8-16 px (16%) |")


def test_held_out_photos_are_read_or_named_when_missing(tmp_path):
    from vaeedof.errors import VaeedofError

    params = {"assets": {"photographic": {"test_photos": ["kept", "lost"]}}}
    Image.fromarray((_texture(40) * 255).astype(np.uint8)).save(tmp_path / "kept.jpg")
    with pytest.raises(VaeedofError, match=r"lost\.jpg: held-out photograph not found"):
        ps.held_out_photos(tmp_path, params)
    params["assets"]["photographic"]["test_photos"] = ["kept"]
    [(stem, photo)] = ps.held_out_photos(tmp_path, params)
    assert stem == "kept" and photo.size == (40, 40)


def test_the_input_selection_oracle_takes_each_region_from_the_input_that_holds_it():
    from experiments.latent_gap.gap import input_selection_oracle

    gt = _texture(40)
    left, right = gt.copy(), gt.copy()
    left[:, 20:] = 0.5  # holds the left half
    right[:, :20] = 0.5
    out = input_selection_oracle([left, right], gt)
    np.testing.assert_array_equal(out[:, :17], gt[:, :17])
    np.testing.assert_array_equal(out[:, 23:], gt[:, 23:])


def test_held_out_crops_are_seeded_per_photograph_crop_and_stream(tmp_path):
    params = {"seed": 5, "assets": {"photographic": {"test_photos": ["a", "b"]}}}
    for stem in ("a", "b"):
        Image.fromarray((_texture(40) * 255).astype(np.uint8)).save(tmp_path / f"{stem}.jpg")

    def draws(crops, stream):
        return {name: rng.random() for name, _, rng in ps.held_out_crops(tmp_path, params, crops, stream)}

    two = draws(2, 43)
    assert list(two) == ["a-0", "a-1", "b-0", "b-1"] and len(set(two.values())) == 4
    assert draws(1, 43) == {k: v for k, v in two.items() if k.endswith("-0")}  # more crops, same first ones
    assert not set(draws(2, 47).values()) & set(two.values())


def test_a_band_without_error_is_infinite_and_a_missing_plane_index_is_named(tmp_path):
    from experiments.latent_gap.gap import GapAccumulator, edge_bins
    from vaeedof.errors import VaeedofError
    from vaeedof.render import layout

    bins = edge_bins(np.zeros((4, 4), np.uint8))
    gap = GapAccumulator()
    gap.add_scene(bins)
    gap.add("exact", bins, np.zeros((4, 4, 3)), np.zeros((4, 4, 3)))
    assert np.isinf(gap.rows("s")[-1]["psnr"]) and np.isnan(gap.rows("s")[0]["psnr"])
    with pytest.raises(VaeedofError, match=r"index\.png: not found"):
        layout.load_index(tmp_path)
    (tmp_path / layout.INDEX_FILE).write_bytes(b"not a png")
    with pytest.raises(VaeedofError, match=r"index\.png: unreadable plane index"):
        layout.load_index(tmp_path)
