import json

import pytest

from vaeedof import scenes
from vaeedof.errors import VaeedofError


def test_sampling_is_deterministic_and_byte_identical(params, asset_index, tmp_path):
    first = scenes.write_scenes(params, asset_index, tmp_path / "a")
    second = scenes.write_scenes(params, asset_index, tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert len(first) == params["scenes"]["train"] + params["scenes"]["test"]


def test_a_scene_does_not_change_with_the_scene_count(params, asset_index):
    more = dict(params, scenes=dict(params["scenes"], train=7))
    assert scenes.sample_scene(params, "train", 1, asset_index) == scenes.sample_scene(
        more, "train", 1, asset_index)
    assert scenes.sample_scene(params, "train", 0, asset_index) != scenes.sample_scene(
        params, "train", 1, asset_index)


def test_scenes_within_algorithm_1_ranges(params, asset_index):
    for index in range(60):
        spec = scenes.sample_scene(params, "train", index, asset_index)
        scenes.check_ranges(spec, params)
        planes = spec["planes"]
        assert len(planes) == params["scenes"]["planes"] + 1
        assert [p["kind"] for p in planes] == ["subject"] * 5 + ["background"]
        assert [p["distance_m"] for p in planes] == sorted(p["distance_m"] for p in planes)
        assert 0.1 <= spec["camera"]["fstop"] <= 1.5
        assert 90 <= spec["camera"]["focal_length_mm"] <= 120
        assert all(1.0 <= p["distance_m"] <= 9.5 for p in planes[:-1])
        background = planes[-1]
        assert background["distance_m"] == 10.0
        # The background plane covers the view plus the worst-case blur of the nearest focus.
        half_view = scenes.view_half_width(10.0, spec["camera"]["focal_length_mm"], 36.0)
        margin = scenes.max_blur_margin(spec["camera"]["aperture_m"], planes[0]["distance_m"], 10.0)
        assert background["width_m"] / 2 >= half_view + margin


def test_check_ranges_rejects_out_of_range(params, asset_index):
    spec = scenes.sample_scene(params, "train", 0, asset_index)
    spec["camera"]["fstop"] = 3.0
    with pytest.raises(VaeedofError, match="fstop"):
        scenes.check_ranges(spec, params)


def test_train_and_test_subjects_disjoint(params, asset_index, tmp_path):
    paths = scenes.write_scenes(params, asset_index, tmp_path / "s")
    used = {"train": set(), "test": set()}
    for path in paths:
        spec = json.loads(path.read_text())
        used[spec["split"]] |= {p["sha256"] for p in spec["planes"] if p["kind"] == "subject"}
    assert used["train"] and used["test"]
    assert not used["train"] & used["test"]
    train_pool = {e["sha256"] for e in asset_index["subjects"]["train"]}
    test_pool = {e["sha256"] for e in asset_index["subjects"]["test"]}
    assert not train_pool & test_pool
