"""The whole chain on a fresh copy of the project at the config/ci.yaml scale, given to both tools as
an overlay (Snakemake: --configfile; DVC: the merged file of `vaeedof configure`): Snakemake runs
assets -> training -> evaluation, a second run does nothing, the report has the plots, DVC agrees
(no render or training redone), `dvc exp run -S` resumes training, MLflow runs can be compared.
The overlay's external method (examples/external_method.py) is in Table 1 and Figure 6."""

import csv
import json
import os
import re

import pytest

from .conftest import SHARED_MIRROR, copy_checkout
from .test_workflow import _planned_rules, _run

pytest.importorskip("bpy")
MIRROR = os.environ.get("VAEEDOF_ASSET_MIRROR") or str(SHARED_MIRROR)
pytestmark = [
    pytest.mark.slow, pytest.mark.blender,
    pytest.mark.skipif(not os.path.exists(os.path.join(MIRROR, "taef2_encoder.pth")),
                       reason="no TAEF2 weights in an asset mirror"),
]
STAGES = ("assets", "render", "patches", "latents", "train", "infer", "evaluate", "throughput", "handheld",
          "infer_handheld", "evaluate_handheld")


# The CI scale, as an overlay on params.yaml (--configfile takes several files: it comes first).
SNAKEMAKE = ("snakemake", "--configfile", "config/ci.yaml")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A clean checkout (tracked files only) at the CI scale: the overlay config/ci.yaml given to
    Snakemake, and merged for DVC by `vaeedof configure`."""
    work = copy_checkout(tmp_path_factory.mktemp("e2e"))
    os.environ["VAEEDOF_ASSET_MIRROR"] = MIRROR
    # The copy's package runs, so its source files are both what DVC hashes and what Snakemake's
    # stage table reads.
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(work / "src")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    _run(["vaeedof", "configure", "config/ci.yaml"], work)
    _run([*SNAKEMAKE, "--cores", "2"], work)
    yield work
    os.environ.pop("PYTHONPATH")
    if saved is not None:
        os.environ["PYTHONPATH"] = saved


def _mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_snakemake_builds_everything_then_nothing(project):
    for name in ("reports/table.md", "reports/metrics.json", "reports/difficulty.png",
                 "reports/throughput.png", "reports/contact_sheet_methods.png",
                 "reports/dataset/contact_sheet_train.png", "models/fusion_ema.safetensors"):
        assert (project / name).stat().st_size > 0, name
    for stage in STAGES:
        assert list((project / "logs" / stage).rglob("*.log")), stage
        assert list((project / "benchmarks" / stage).rglob("*.tsv")), stage
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert {"latent", "hybrid", "mean", "laplacian", "vae_ceiling"} <= set(metrics["methods"])
    assert "PSNR" in metrics["methods"]["example"] and not metrics["failed_methods"]
    # The peers of config/ci.yaml: measured when installed, listed as not run when not.
    for peer in ("stackmff-v3", "openfocus-guided-filter"):
        assert "PSNR" in metrics["methods"].get(peer, {}) or peer in metrics["unavailable_methods"], peer
    assert "| example |" in (project / "reports/table.md").read_text()
    speeds = {(r["method"], r["inputs"]): r for r in csv.DictReader(open(project / "reports/throughput.csv"))}
    assert all(float(speeds[("example", str(n))]["images_per_s"]) > 0 for n in range(2, 8))
    assert "Nothing to be done" in _run([*SNAKEMAKE, "--cores", "2", "-n"], project)


def test_report_contains_the_plots(project):
    _run([*SNAKEMAKE, "--report", "reports/report.html"], project)
    html = (project / "reports/report.html").read_text(errors="replace")
    for plot in ("difficulty.png", "throughput.png", "contact_sheet_methods.png"):
        assert plot in html, plot


def test_changing_steps_reruns_only_training_and_after(project, tmp_path):
    override = tmp_path / "steps.yaml"
    override.write_text("train:\n  steps: 30\n")
    planned = _planned_rules(_run([*SNAKEMAKE, str(override), "--cores", "2", "-n"], project))
    assert set(planned) == {"train", "infer", "evaluate", "throughput", "infer_handheld", "evaluate_handheld",
                            "all"}, planned


def _dvc_changed(project) -> set[str]:
    """The stages `dvc status` names as changed."""
    out = _run(["dvc", "status"], project)
    return {line.strip().rstrip(":") for line in out.splitlines() if re.match(r"^\w[\w@]*:$", line.strip())}


def test_dvc_after_snakemake_redoes_no_render_or_training(project):
    # Snakemake recorded what it built in dvc.lock: DVC finds every stage current and runs none.
    assert _dvc_changed(project) == set()
    renders, checkpoints = _mtimes(project / "data/mattingmfif"), _mtimes(project / "models/checkpoints")
    out = _run(["dvc", "repro"], project)
    assert "up to date" in out and "Running stage" not in out, out
    assert _mtimes(project / "data/mattingmfif") == renders
    assert _mtimes(project / "models/checkpoints") == checkpoints
    # ...and Snakemake finds nothing to redo after DVC rewrote and re-linked its outputs.
    assert "Nothing to be done" in _run([*SNAKEMAKE, "--cores", "2", "-n"], project)
    for command in (["dvc", "metrics", "show"], ["dvc", "params", "diff"], ["dvc", "plots", "show"]):
        _run(command, project)
    assert "PSNR" in _run(["dvc", "metrics", "show"], project)


def test_a_clone_pulls_from_the_remote_and_has_nothing_to_rerun(project, tmp_path):
    # The run's outputs pushed to a remote of this machine only (config.local: the project's own
    # default remote stays as committed), and dvc.lock committed, as a user shares a run.
    remote = tmp_path / "store"
    _run(["dvc", "remote", "add", "--local", "-d", "tmpstore", str(remote)], project)
    try:
        _run(["dvc", "push"], project)
    finally:
        _run(["dvc", "remote", "remove", "--local", "tmpstore"], project)
    _run(["git", "add", "-A"], project)
    _run(["git", "-c", "user.email=ci@localhost", "-c", "user.name=ci", "commit", "-qm", "a run"], project)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "models").exists() and not (clone / "reports").exists()
    _run(["dvc", "remote", "modify", "--local", "store", "url", str(remote)], clone)
    _run(["vaeedof", "configure", "config/ci.yaml"], clone)  # the merged file is not data: made here
    _run(["dvc", "pull"], clone)
    assert (clone / "models/fusion_ema.safetensors").read_bytes() == \
        (project / "models/fusion_ema.safetensors").read_bytes()
    assert _dvc_changed(clone) == set()
    assert "Data and pipelines are up to date" in _run(["dvc", "status"], clone)
    out = _run(["dvc", "repro"], clone)
    assert "Running stage" not in out, out
    # Snakemake has no record of this clone's files (.snakemake is not shared) and a pull gives
    # them new timestamps in no order: --touch marks them current, in the order of the DAG.
    lock = (clone / "dvc.lock").read_text()
    _run([*SNAKEMAKE, "--cores", "1", "--touch"], clone)
    assert "Nothing to be done" in _run([*SNAKEMAKE, "--cores", "2", "-n"], clone)
    assert (clone / "dvc.lock").read_text() == lock and not (clone / "logs/dvc-commit.log").exists()
    # The pulled reports are complete: every figure of the pipeline is collected from them (the
    # stage timings are Snakemake's benchmark files, not data: they stay as recorded), and the
    # documents regenerated from them pass the check.
    documents = ["README.md", *sorted(str(p.relative_to(clone)) for p in (clone / "docs").glob("*.md"))]
    said = _run(["vaeedof", "readme", "--collect", *documents], clone)
    assert "collected table, per-scene, difficulty, throughput, handheld;" in said, said
    _run(["vaeedof", "readme", "--check", *documents], clone)


def test_editing_a_metrics_code_reruns_only_the_evaluation_stages(project):
    metrics = project / "src/vaeedof/evaluation/metrics.py"
    original = metrics.read_text()
    metrics.write_text(original + "\n# an edit\n")
    try:
        planned = _planned_rules(_run([*SNAKEMAKE, "--cores", "2", "-n"], project))
        assert set(planned) == {"evaluate", "evaluate_handheld", "all"}, planned
        assert _dvc_changed(project) == {"evaluate", "evaluate_handheld"}
    finally:
        metrics.write_text(original)


def test_changing_the_tile_reruns_inference_not_rendering_or_training(project):
    overlay = project / "config/ci.yaml"  # the scale's own file: its keys win over params.yaml's
    original = overlay.read_text()
    assert "  tile: 128\n" in original
    overlay.write_text(original.replace("  tile: 128\n", "  tile: 64\n"))
    try:
        planned = _planned_rules(_run([*SNAKEMAKE, "--cores", "2", "-n"], project))
        assert set(planned) == {"infer", "infer_handheld", "throughput", "evaluate", "evaluate_handheld",
                                "all"}, planned
        assert _dvc_changed(project) == {"configure"}  # DVC's first stage merges the edit in...
        _run(["vaeedof", "configure", "--refresh"], project)
        # ...then the stages reading infer.tile follow (and the evaluations after them).
        assert _dvc_changed(project) == {"configure", "infer", "infer_handheld", "throughput"}
    finally:
        overlay.write_text(original)
        _run(["vaeedof", "configure", "--refresh"], project)
    assert _dvc_changed(project) == set()


def test_paper_scale_merged_file_passes_a_dvc_dry_run(project):
    _run(["vaeedof", "configure", "config/paper.yaml"], project)
    try:
        out = _run(["dvc", "repro", "--dry"], project)
        for stage in ("render@train", "train", "evaluate", "throughput"):
            assert f"Running stage '{stage}'" in out, out[-3000:]
        assert "vaeedof --params params.run.yaml train --nproc auto" in out
    finally:
        _run(["vaeedof", "configure", "config/ci.yaml"], project)
    assert _dvc_changed(project) == set()


def test_dvc_experiment_resumes_training(project):
    renders = _mtimes(project / "data/mattingmfif")
    # The scale's overlay is a dependency of DVC's first stage: -S edits it, the merge follows.
    out = _run(["dvc", "exp", "run", "-S", "config/ci.yaml:train.steps=30"], project)
    assert "resuming from" in out and "step 30/30" in out
    assert "Running stage 'render" not in out or _mtimes(project / "data/mattingmfif") == renders
    assert _mtimes(project / "data/mattingmfif") == renders
    assert "train.steps" in _run(["dvc", "exp", "show", "--no-pager", "--csv"], project)


def test_runs_compares_training_and_evaluation_runs(project):
    out = _run(["vaeedof", "runs", "-n", "20"], project)
    assert "| train" in out or "| train-" in out
    assert "evaluation" in out and "latent.PSNR" in out
    # A second training with another learning rate: the differing parameter becomes a column.
    # At the scale of the run (the merged file DVC reads), as a stage's command line names it.
    _run(["vaeedof", "--params", "params.run.yaml", "--set", "train.lr=0.002", "train", "--out", "models_lr",
          "--latents", "data/latents", "--patches", "data/patches"], project)
    trained = _run(["vaeedof", "runs", "--kind", "train"], project).splitlines()
    assert "train.lr" in trained[0] and len(trained) == 4, trained
    assert "0.002" in trained[2] and "0.001" in trained[3]


def test_paper_scale_dry_run_plans_10000_renders_and_multi_gpu_training(project):
    out = _run(["snakemake", "-n", "--configfile", "config/paper.yaml", "--workflow-profile",
                "profiles/slurm"], project)
    planned = _planned_rules(out)
    assert planned["render"] == 10_200 and planned["scenes"] == 10_200, planned  # 10,000 train + 200 test
    assert planned["train"] == 1
    train_block = out[out.index("rule train:"):][:3000]
    assert "gpu=4" in train_block and "slurm_partition=gpu" in train_block
    assert re.search(r"vaeedof --params \S+ train --nproc 4", out), train_block
