"""No-reference fusion metrics (Q^AB/F, Q_Y, NMI) on stacks with known answers."""

import cv2
import numpy as np
import pytest
import torch

from vaeedof.evaluation import nr_metrics


def _scene(seed=0, size=96):
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.uniform(0, 1, (size, size, 3)).astype(np.float32), (0, 0), 1.2)
    image = (image - image.min()) / (image.max() - image.min())
    blurred = cv2.GaussianBlur(image, (0, 0), 3)
    near, far = image.copy(), image.copy()
    near[:, size // 2:] = blurred[:, size // 2:]  # left half in focus
    far[:, : size // 2] = blurred[:, : size // 2]  # right half in focus
    tensor = lambda x: torch.from_numpy(x).permute(2, 0, 1)  # noqa: E731
    return tensor(image), tensor(near), tensor(far), tensor(blurred)


def test_identical_inputs_and_fusion_give_the_known_maxima():
    image = _scene()[0]
    scores = nr_metrics.no_reference_scores([image, image], image)
    # Q^AB/F at full edge preservation: both sigmoids at 1 (strength ratio, orientation); NMI of
    # copies is 2; Q_Y is SSIM = 1.
    perfect = 0.9994 / (1 + np.exp(-15 * (1 - 0.5))) * 0.9879 / (1 + np.exp(-22 * (1 - 0.8)))
    assert scores["qabf"] == pytest.approx(perfect, abs=1e-6)
    assert scores["nmi"] == pytest.approx(2.0, abs=1e-9)
    assert scores["qy"] == pytest.approx(1.0, abs=1e-6)


def test_all_in_focus_beats_blurred_and_averaged_fusions():
    sharp, near, far, blurred = _scene()
    scores = {name: nr_metrics.no_reference_scores([near, far], image)
              for name, image in [("sharp", sharp), ("mean", (near + far) / 2), ("blurred", blurred)]}
    assert scores["sharp"]["qabf"] > scores["mean"]["qabf"] > scores["blurred"]["qabf"]
    assert scores["sharp"]["qy"] > scores["mean"]["qy"]
    assert scores["sharp"]["nmi"] > scores["mean"]["nmi"]


def test_n_input_forms_reduce_to_the_pair_forms():
    sharp, near, far, _ = _scene(1)
    inputs = [nr_metrics.luminance(x) for x in (near, far)]
    fused = nr_metrics.luminance(sharp)
    # Repeating the pair: Q^AB/F and NMI are weighted means, so unchanged; Q_Y averages pairs
    # (A,A) and (B,B), which are different pairs, so only the first two are checked.
    assert nr_metrics.qabf(inputs * 2, fused) == pytest.approx(nr_metrics.qabf(inputs, fused))
    assert nr_metrics.nmi(inputs * 2, fused) == pytest.approx(nr_metrics.nmi(inputs, fused))
    assert nr_metrics.qy(inputs, fused) == pytest.approx(nr_metrics.qy(inputs[::-1], fused))


def _stack_folder(root, name):
    from PIL import Image

    _, near, far, _ = _scene(2, size=80)
    folder = root / "Collection" / name
    folder.mkdir(parents=True)
    for label, image in (("A", near), ("B", far)):
        pixels = (image.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{label}.png")
    return folder


def test_real_metrics_rows_and_collection_means(tmp_path):
    from vaeedof.evaluation import real_metrics
    from vaeedof.fusion.files import find_stacks

    for name in ("s1", "s2"):
        _stack_folder(tmp_path, name)
    path = real_metrics.run(find_stacks([tmp_path / "Collection"]), None, tmp_path / "reports",
                            tmp_path / "none.safetensors", {}, track=False)
    import csv

    rows = list(csv.DictReader(path.open()))
    methods = {r["method"] for r in rows}
    assert {"mean", "laplacian"} <= methods
    means = [r for r in rows if r["stack"] == "mean"]
    assert len(means) == len(methods) and all(r["collection"] == "Collection" for r in rows)
    score = {r["method"]: float(r["qabf"]) for r in means}
    assert score["laplacian"] > score["mean"]  # the max-contrast pyramid keeps the edges


def test_crop_window_straddles_the_focus_boundary():
    from vaeedof.evaluation.real import focus_transition_window

    _, near, far, _ = _scene(3, size=200)  # near sharp left of x=100, far right of it
    top, left = focus_transition_window([near, far], 64)
    assert left < 100 < left + 64


def test_real_metrics_without_stacks_is_one_clear_error(tmp_path):
    from vaeedof.errors import VaeedofError
    from vaeedof.evaluation import real_metrics

    with pytest.raises(VaeedofError, match="no real stacks"):
        real_metrics.run([], None, tmp_path, tmp_path / "none", {}, track=False)
    assert not (tmp_path / "real_metrics.csv").exists()
