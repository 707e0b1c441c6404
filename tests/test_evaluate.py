"""Baselines, metrics and the evaluation report on small synthetic test scenes."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vaeedof import atomic
from vaeedof.evaluation import figures, real, throughput
from vaeedof.evaluation.baselines import laplacian_pyramid_fusion, mean_fusion
from vaeedof.evaluation.infer import infer, latent_selection_oracle
from vaeedof.evaluation.metrics import METRICS, MetricSuite
from vaeedof.evaluation.scores import score, table_markdown
from vaeedof.fusion.engine import Fuser
from vaeedof.fusion.files import find_stacks
from vaeedof.nets.unet import FusionUNet

from .synthetic import random_vae


def test_latent_selection_oracle_picks_the_input_latent_nearest_the_gt():
    vae = random_vae()
    (a, b), sharp = _pair(64)
    with torch.no_grad():
        # An input equal to the GT: the oracle takes it everywhere and meets the ceiling exactly.
        assert torch.equal(latent_selection_oracle(vae, [a, sharp], sharp), vae.reconstruct(sharp[None])[0])
        # Each half of the GT held by one input: the oracle beats either input alone.
        oracle = latent_selection_oracle(vae, [a, b], sharp)
        ceiling = vae.reconstruct(sharp[None])[0]
        alone = [vae.reconstruct(x[None])[0] for x in (a, b)]
    error = (oracle - ceiling).abs().mean()
    assert all(error < (image - ceiling).abs().mean() for image in alone)


def _pair(size=128, seed=0):
    gen = torch.Generator().manual_seed(seed)
    sharp = torch.rand(3, size, size, generator=gen)
    blurred = torch.nn.functional.avg_pool2d(sharp[None], 9, 1, 4, count_include_pad=False)[0]
    a, b = sharp.clone(), sharp.clone()
    a[:, :, : size // 2] = blurred[:, :, : size // 2]
    b[:, :, size // 2:] = blurred[:, :, size // 2:]
    return [a, b], sharp


def test_laplacian_fusion_beats_the_mean():
    inputs, gt = _pair()
    lap_err = (laplacian_pyramid_fusion(inputs) - gt).abs().mean()
    mean_err = (mean_fusion(inputs) - gt).abs().mean()
    assert lap_err < mean_err / 2


@pytest.mark.skipif(not __import__("shutil").which("enfuse"), reason="enfuse not installed")
def test_enfuse_baseline_focus_stacks():
    from vaeedof.evaluation.baselines import enfuse_fusion

    inputs, gt = _pair()
    assert (enfuse_fusion(inputs) - gt).abs().mean() < (mean_fusion(inputs) - gt).abs().mean() / 4


def test_metric_suite_values_and_unavailable_reasons():
    suite = MetricSuite()
    inputs, gt = _pair(192)
    perfect, worse = suite(gt, gt), suite(mean_fusion(inputs), gt)
    assert set(perfect) == set(METRICS)
    assert perfect["MSE"] == 0 and worse["MSE"] > 0
    assert worse["PSNR"] < 40 and perfect["SSIM"] == pytest.approx(1.0, abs=1e-4)
    assert perfect["MS-SSIM"] is not None  # 192 px is enough for the multi-scale metrics
    for name in ("LPIPS", "DISTS", "PieAPP"):  # weights are never downloaded here
        if name in suite.unavailable:
            assert perfect[name] is None and "no download" in suite.unavailable[name]
    assert "MS-SSIM" in suite.size_reasons(128)


def test_table_marks_the_best_and_lists_unavailable():
    summary = {"methods": {"a": {"PSNR": 30.0, "MSE": 0.002}, "b": {"PSNR": 25.0, "MSE": 0.001}},
               "unavailable": {"LPIPS": "weights not on this machine"}, "scenes": 2}
    summary["unavailable"].update({n: "x" for n in METRICS if n not in ("PSNR", "MSE", "LPIPS")})
    table = table_markdown(summary)
    assert "**30.00**" in table and "| 25.00 |" in table
    assert "**0.0010**" in table and "LPIPS: unavailable, weights not on this machine" in table


def test_infer_and_evaluate_end_to_end(tmp_path, monkeypatch):
    data = tmp_path / "test"
    for index in range(2):
        scene = data / f"test_{index:05d}"
        scene.mkdir(parents=True)
        inputs, gt = _pair(128, index)
        for name, image in [(f"focus_{k}.png", im) for k, im in enumerate(inputs)] + [("gt.png", gt)]:
            Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(scene / name)
        (scene / "scene.json").write_text(json.dumps({"focus_order": [0, 1]}))
    fuser = Fuser(FusionUNet(16, 7, (16, 32, 64), 2), random_vae(), "cpu", tile=64)
    manifest = infer(data, tmp_path / "fused", fuser)
    assert set(manifest["methods"]) >= {"latent", "mean", "laplacian", "vae_ceiling",
                                        "latent_selection_oracle"}
    assert (tmp_path / "fused/laplacian/test_00001.png").exists()
    summary = score(data, tmp_path / "fused", tmp_path / "reports", {"sha256": "abc"})
    assert summary["methods"]["laplacian"]["PSNR"] > summary["methods"]["mean"]["PSNR"]
    assert summary["checkpoint"]["sha256"] == "abc"
    assert "MS-SSIM" in summary["unavailable"]  # 128 px images
    csv_lines = (tmp_path / "reports/per_image.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 2 * len(manifest["methods"])
    assert "| laplacian |" in (tmp_path / "reports/table.md").read_text()
    from vaeedof.tracking import log_evaluation

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    run_id = log_evaluation(summary, {"vae": {"name": "taef2"}, "infer": {"tile": 64}}, tmp_path / "reports")
    import mlflow

    run = mlflow.tracking.MlflowClient(uri).get_run(run_id)
    assert run.data.metrics["laplacian.PSNR"] == pytest.approx(summary["methods"]["laplacian"]["PSNR"])
    assert run.data.tags["kind"] == "evaluation"


def test_difficulty_throughput_and_sheets(tmp_path):

    data = tmp_path / "test"
    for index in range(2):
        scene = data / f"test_{index:05d}"
        scene.mkdir(parents=True)
        inputs, gt = _pair(64, index)
        # Noise growing down the image: patches differ in how good their best input is.
        ramp = torch.linspace(0, 0.2, 64).view(1, 64, 1)
        inputs = [(im + ramp * torch.randn(im.shape, generator=torch.Generator().manual_seed(k))).clamp(0, 1)
                  for k, im in enumerate(inputs)]
        for name, image in [(f"focus_{k}.png", im) for k, im in enumerate(inputs)] + [("gt.png", gt)]:
            Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(scene / name)
        (scene / "scene.json").write_text(json.dumps({"focus_order": [0, 1]}))
    fuser = Fuser(FusionUNet(16, 7, (16, 32, 64), 2), random_vae(), "cpu", tile=64)
    methods = infer(data, tmp_path / "fused", fuser)["methods"]
    rows = figures.difficulty_table(data, tmp_path / "fused", patch=16, bins=3)
    assert {r["bin"] for r in rows} == {0, 1, 2}
    # Quantile bins: every bin holds patches; difficulty grows with the bin.
    by_bin = {r["bin"]: r["difficulty"] for r in rows}
    assert by_bin[0] < by_bin[1] < by_bin[2]
    assert sum(r["patches"] for r in rows if r["method"] == "mean") == 2 * 16
    atomic.write_csv(tmp_path / "difficulty.csv", rows)
    figures.plot(rows, "difficulty", "psnr", tmp_path / "difficulty.png", "t", size_key="patches")
    assert Image.open(tmp_path / "difficulty.png").size[0] > 100
    speed = throughput.throughput_table(fuser, size=64, counts=[2, 3])
    assert {(r["inputs"], r["method"]) for r in speed} >= {(2, "latent"), (3, "mean")}
    assert all(r["images_per_s"] > 0 for r in speed)
    figures.methods_sheet(data, tmp_path / "fused", tmp_path / "sheet.png", scenes=2, tile=32)
    assert Image.open(tmp_path / "sheet.png").size == (32 * (2 + len(methods) + 1), 2 * (32 + 14))


def test_real_stacks_discovery_and_sheet(tmp_path):
    from vaeedof.errors import VaeedofError

    for stack in ("s1", "s2"):
        folder = tmp_path / "real" / stack
        folder.mkdir(parents=True)
        for name in ("A.jpg", "B.jpg"):
            _write = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
            Image.fromarray(_write).save(folder / name)
    (tmp_path / "real/s2/notes.txt").write_text("not an image")
    stacks = find_stacks([str(tmp_path / "real")], limit=5)
    assert [(name, [p.name for p in s]) for name, s in stacks] == [("s1", ["A.jpg", "B.jpg"]),
                                                                   ("s2", ["A.jpg", "B.jpg"])]
    assert len(find_stacks([str(tmp_path / "real/s1")], limit=5)) == 1
    with pytest.raises(VaeedofError, match="not found"):
        find_stacks([str(tmp_path / "nope")], limit=5)
    fuser = Fuser(FusionUNet(16, 7, (16, 32, 64), 2), random_vae(), "cpu", tile=64)
    real.real_stacks_sheet(stacks, fuser, tmp_path / "sheet.png", tile=32)
    # Per stack: the whole images (32 x 24 under a label), then their 1:1 crops (32 x 32).
    assert Image.open(tmp_path / "sheet.png").size[1] == 2 * ((24 + 14) + (32 + 14))


def test_readme_figures_are_generated_from_the_reports(tmp_path, capsys):
    """README blocks between markers are results/ tables, collected from reports/ and benchmarks/
    with a stamp; --check fails on drift."""
    from vaeedof.cli import main

    reports, bench = tmp_path / "reports", tmp_path / "benchmarks" / "train"
    reports.mkdir()
    bench.mkdir(parents=True)
    (bench / "train.tsv").write_text("s\th:m:s\n218.5\t0:03:38\n")
    summary = {"methods": {"hybrid": {"PSNR": 34.0, "MSE": 0.001},
                           "vae_ceiling": {"PSNR": 32.0, "MSE": 0.0007}}, "unavailable": {}, "scenes": 2}
    (reports / "metrics.json").write_text(json.dumps(summary))
    atomic.write_csv(reports / "per_image.csv", [
        {"scene": "s0", "method": "hybrid", "PSNR": 40.0, "MSE": 0.0001},
        {"scene": "s1", "method": "hybrid", "PSNR": 28.0, "MSE": 0.0016},
        {"scene": "s0", "method": "vae_ceiling", "PSNR": 32.0, "MSE": 0.0006},
        {"scene": "s1", "method": "vae_ceiling", "PSNR": 32.0, "MSE": 0.0006}])
    atomic.write_csv(reports / "difficulty.csv", [
        {"bin": 0, "difficulty": 60.0, "method": "hybrid", "psnr": 70.0, "patches": 9}])
    atomic.write_csv(reports / "throughput.csv", [
        {"inputs": 2, "method": "gff", "images_per_s": 3.7, "device": "cpu"}])
    readme = tmp_path / "README.md"
    names = ["table", "per-scene", "difficulty", "throughput", "timings"]
    readme.write_text("intro\n" + "".join(f"<!-- reports:{n} -->\nold\n<!-- /reports:{n} -->\n"
                                           for n in names))
    args = [str(readme), "--results", str(tmp_path / "results"), "--reports", str(reports), "--benchmarks",
            str(tmp_path / "benchmarks")]
    assert main(["readme", *args, "--check"]) == 2
    assert "results/table.csv: not recorded" in capsys.readouterr().err
    assert main(["readme", *args, "--collect"]) == 0
    assert "collected table," in capsys.readouterr().out
    stamp = (tmp_path / "results/table.csv").read_text().splitlines()[:2]
    assert stamp[0] == "# made by: snakemake --cores all" and stamp[1].startswith("# commit: ")
    text = readme.read_text()
    assert "From `" in text and "`snakemake --cores all` at commit" in text
    assert "| hybrid | **34.00** |" in text or "**34.00**" in text
    assert "| hybrid | 34.00 | 34.00 | 30.71 | 1/2 |" in text  # pooled MSE 0.00085
    assert "40.0/32.0, 28.0/32.0" in text and "| train | 1 | 218 |" in text and "old" not in text
    assert main(["readme", *args, "--check"]) == 0
    (reports / "metrics.json").write_text(json.dumps(dict(summary, scenes=3)))
    assert main(["readme", *args, "--check"]) == 0  # the committed tables, not the reports, decide
    assert main(["readme", *args, "--collect", "--check"]) == 2  # collected anew: the README is stale


def test_defocus_radius_is_the_thin_lens_blur_disc():
    from experiments.handheld.measures import defocus_radius_px

    camera = {"aperture_m": 0.05, "focal_length_mm": 100.0, "sensor_width_mm": 36.0}
    assert defocus_radius_px(camera, 5.0, 5.0, 1024) == 0.0
    # c = A f |d - s| / (d (s - f)) = 0.05 * 0.1 * 3 / (2 * 4.9) m; radius c / 2 over 36 mm = 1024 px
    assert abs(defocus_radius_px(camera, 2.0, 5.0, 1024) - 0.05 * 0.1 * 3 / 9.8 / 2 / 0.036 * 1024) < 1e-9
    assert defocus_radius_px(camera, 1.0, 5.0, 1024) > defocus_radius_px(camera, 2.0, 5.0, 1024)


def test_corner_error_is_the_rms_corner_distance():
    from experiments.handheld.measures import corner_error

    shifted = np.eye(3)
    shifted[:2, 2] = (3.0, 4.0)
    assert corner_error(np.eye(3), np.eye(3), 100, 200) == 0.0
    assert abs(corner_error(shifted, np.eye(3), 100, 200) - 5.0) < 1e-12
