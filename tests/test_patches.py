import json

import numpy as np
import pytest
from PIL import Image

from vaeedof.errors import VaeedofError
from vaeedof.training import patches

from .conftest import tiny_params


def _fake_scene(folder, seed, size=40, inputs=3):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in [f"focus_{k}.png" for k in range(inputs)] + ["gt.png"]:
        Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)).save(folder / name)
    (folder / "scene.json").write_text(json.dumps({"focus_order": list(range(inputs)),
                                                  "fingerprint": f"fp{seed}"}))


def test_patches_hold_every_input_and_the_gt(tmp_path):
    for index in range(4):
        _fake_scene(tmp_path / "train" / f"train_{index:05d}", index)
    params = tiny_params()
    params["patches"].update(size=16, per_scene=5, val_scenes=1, val_per_scene=2, shard_size=7)
    manifest_path = patches.extract(params, tmp_path / "train", tmp_path / "patches")
    manifest = json.loads(manifest_path.read_text())
    train = manifest["splits"]["train"]
    assert train["count"] == 15 and train["inputs"] == 3
    assert [s["count"] for s in train["shards"]] == [10, 5]  # flushed at >= 7 samples
    assert manifest["splits"]["val"]["scenes"] == ["train_00003"]
    sample = np.load(tmp_path / "patches" / train["shards"][0]["file"])[0]
    assert sample.shape == (4, 16, 16, 3)
    # The crop is the same window of every image: find it in the first scene's GT.
    gt = np.asarray(Image.open(tmp_path / "train/train_00000/gt.png"))
    focus = np.asarray(Image.open(tmp_path / "train/train_00000/focus_1.png"))
    hits = [(y, x) for y in range(25) for x in range(25) if np.array_equal(gt[y:y + 16, x:x + 16], sample[3])]
    assert len(hits) == 1
    y, x = hits[0]
    assert np.array_equal(focus[y:y + 16, x:x + 16], sample[1])
    # Unchanged sources: nothing is rewritten.
    before = manifest_path.stat().st_mtime_ns
    patches.extract(params, tmp_path / "train", tmp_path / "patches")
    assert manifest_path.stat().st_mtime_ns == before


def test_too_few_scenes_or_too_large_patches(tmp_path):
    _fake_scene(tmp_path / "train" / "train_00000", 0)
    params = tiny_params()
    params["patches"].update(val_scenes=1)
    with pytest.raises(VaeedofError, match="need more than"):
        patches.extract(params, tmp_path / "train", tmp_path / "p")
    _fake_scene(tmp_path / "train" / "train_00001", 1)
    params["patches"].update(size=64)
    with pytest.raises(VaeedofError, match="exceeds the render size"):
        patches.extract(params, tmp_path / "train", tmp_path / "p")


def test_missing_rendered_split_is_a_clear_error(tmp_path, capsys):
    from vaeedof.cli import main

    from .conftest import ROOT

    missing = tmp_path / "nope"
    with pytest.raises(VaeedofError, match="rendered split not found"):
        patches.extract(tiny_params(), missing, tmp_path / "p")
    for command in (["patches", "--data", str(missing), "--out", str(tmp_path / "p")],
                    ["contact-sheet", "--data", str(missing), "--out", str(tmp_path / "s.png")]):
        assert main(["--params", str(ROOT / "params.yaml"), *command]) == 2
        assert "nope: rendered split not found" in capsys.readouterr().err
    assert not (tmp_path / "p").exists() and not (tmp_path / "s.png").exists()
