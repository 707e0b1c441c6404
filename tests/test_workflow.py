"""The workflow end to end at a tiny scale: Snakemake and DVC drive the same CLI, agree on what
is up to date, and a parameter change reruns only what depends on it."""

import os
import re
import shutil
import subprocess
import time

import pytest
import yaml

from .conftest import ROOT

pytest.importorskip("bpy")
pytestmark = [pytest.mark.slow, pytest.mark.blender]


def _run(cmd, cwd):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=dict(os.environ))
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def _planned_rules(output: str) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table."""
    counts = {}
    table = output.split("Job stats:", 1)[-1] if "Job stats:" in output else ""
    for line in table.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) not in ("total", "job", "count"):
            counts[match.group(1)] = int(match.group(2))
    return counts


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return _small_project(tmp_path_factory.mktemp("project"))


def _small_project(work):
    for name in ("Snakefile", "dvc.yaml"):
        shutil.copy(ROOT / name, work / name)
    for name in ("workflow", "profiles", "config"):
        shutil.copytree(ROOT / name, work / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["assets"]["procedural"].update(subjects_train=4, subjects_test=2, backgrounds_train=1,
                                          backgrounds_test=1, hdris=1, subject_size=48,
                                          hdri_width=32)
    params["scenes"].update(train=2, test=1)
    params["render"].update(resolution=32, crop=None, test_crop=None, samples=2, contact_sheet_scenes=2)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # DVC stages list the package sources as dependencies.
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run(["git", "init", "-q"], work)
    _run(["dvc", "init", "-q"], work)
    (work / "logs/render").mkdir(parents=True)
    return work


def _replay_logged_command(log: str, work, output: str) -> None:
    """Run by hand the command a log shows for `output` (Snakemake's shell line, DVC's `> cmd`):
    it must rebuild the same bytes, reading the parameter file it names."""
    [line] = [match.group(1) for line in log.splitlines()
              if (match := re.match(r"^(?:> |Shell command: )(vaeedof --params \S+ .*)", line.strip()))
              and output in line]
    before = (work / output).read_bytes()
    (work / output).unlink()
    subprocess.run(line, shell=True, cwd=work, check=True, capture_output=True)
    assert (work / output).read_bytes() == before, line


def _render_mtimes(work):
    return {p: p.stat().st_mtime_ns for p in (work / "data/mattingmfif").rglob("*.png")}


def test_snakemake_then_dvc_agree(project):
    out = _run(["snakemake", "--cores", "2", "dataset"], project)
    assert "Finished job" in out or "steps (100%) done" in out
    assert not (project / "dvc.lock").exists()  # a partial run leaves dvc.lock alone
    renders = _render_mtimes(project)
    assert len(renders) == 3 * 8  # 3 scenes x (6 focus + gt + index)
    for split in ("train", "test"):
        assert (project / f"reports/dataset/contact_sheet_{split}.png").stat().st_size > 0
    assert (project / "logs/render/train/train_00000.log").exists()
    assert (project / "benchmarks/render/train/train_00000.tsv").exists()
    _replay_logged_command(out, project, "reports/dataset/contact_sheet_train.png")
    assert "Nothing to be done" in _run(["snakemake", "--cores", "2", "-n", "dataset"], project)
    # DVC runs the same chain: its render stages find every scene current and render nothing.
    dvc_out = _run(["dvc", "repro", "contact_sheet"], project)
    assert "up to date" in dvc_out
    assert _render_mtimes(project) == renders
    assert "up to date" in _run(["dvc", "status", "--with-deps", "contact_sheet"], project)
    # ...and Snakemake does not want to redo anything DVC touched.
    assert "Nothing to be done" in _run(["snakemake", "--cores", "2", "-n", "dataset"], project)


def test_dvc_first_then_snakemake_finds_nothing_to_do(tmp_path):
    """The reverse order, on a fresh project: `dvc repro` builds the dataset, then Snakemake
    has nothing to do, and DVC stays clean."""
    work = _small_project(tmp_path)
    out = _run(["dvc", "repro", "contact_sheet"], work)
    _replay_logged_command(out, work, "reports/dataset/contact_sheet_test.png")
    renders = _render_mtimes(work)
    assert "Nothing to be done" in _run(["snakemake", "--cores", "2", "-n", "dataset"], work)
    assert "up to date" in _run(["dvc", "status", "--with-deps", "contact_sheet"], work)
    assert _render_mtimes(work) == renders


def test_dvc_checkout_relinking_does_not_trigger_snakemake(project):
    # DVC re-links cached outputs on checkout, changing timestamps; rendering must not rerun.
    for path in (project / "data/scenes").rglob("*.json"):
        os.utime(path)
    _run(["dvc", "checkout", "--force", "contact_sheet"], project)
    assert "Nothing to be done" in _run(["snakemake", "--cores", "2", "-n", "dataset"], project)


def test_parameter_change_reruns_only_dependents(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["render"]["samples"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    planned = _planned_rules(_run(["snakemake", "--cores", "2", "-n", "dataset"], project))
    assert planned.get("render") == 3
    assert "scenes" not in planned and "assets" not in planned
    # DVC reads the merged file: its first stage (configure) merges again, then the stages whose
    # values changed follow.
    status = _run(["dvc", "status", "--with-deps", "contact_sheet"], project)
    assert "configure:" in status and "render@train" not in status
    _run(["vaeedof", "configure", "--refresh"], project)
    status = _run(["dvc", "status", "--with-deps", "contact_sheet"], project)
    assert "render@train" in status and "scenes" not in status.replace("data/scenes", "")


def test_adding_scenes_renders_only_the_new_ones(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["render"]["samples"] = 2
    params["scenes"]["train"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    planned = _planned_rules(_run(["snakemake", "--cores", "2", "-n", "dataset"], project))
    assert planned.get("render") == 1 and planned.get("scenes") == 1, planned
    # Even when Snakemake reruns a render job (here: forced), current renders are kept.
    before = _render_mtimes(project)
    targets = [f"data/mattingmfif/{s}/{s}_{i:05d}/scene.json" for s, n in (("train", 3), ("test", 1))
               for i in range(n)]
    _run(["snakemake", "--cores", "2", "--forcerun", "render", "--", *targets], project)
    after = _render_mtimes(project)
    assert all(after[p] == t for p, t in before.items())
    assert len(after) == len(before) + 8


def test_second_invocation_at_once_is_refused_and_the_first_completes(project):
    first = subprocess.Popen(["snakemake", "--cores", "1", "--forcerun", "assets", "--", "dataset"],
                             cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    locks = project / ".snakemake/locks"
    deadline = time.time() + 60
    while not (locks.exists() and any(locks.iterdir())):
        assert first.poll() is None and time.time() < deadline, "first run never took the lock"
        time.sleep(0.05)
    # Snakemake checks the lock only after building its DAG, and the DAG build can trip over an
    # output the first run has just deleted to rewrite it: that refusal is real but says "not
    # found", so ask again until the lock answers (the first run takes seconds per render).
    for _ in range(40):
        second = subprocess.run(["snakemake", "--cores", "1", "dataset"], cwd=project, capture_output=True,
                                text=True)
        said = (second.stdout + second.stderr).lower()
        assert second.returncode != 0, said[-2000:]
        if "locked" in said or first.poll() is not None:
            break
        assert "not found" in said, said[-2000:]
        time.sleep(0.25)
    assert "locked" in said, said[-2000:]
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output[-3000:]
    assert "Nothing to be done" in _run(["snakemake", "--cores", "2", "-n", "dataset"], project)


def test_invalid_params_stop_before_any_job(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["render"]["resolution"] = "huge"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = subprocess.run(["snakemake", "--cores", "2", "-n", "dataset"], cwd=project, capture_output=True,
                            text=True)
    assert result.returncode != 0
    assert "render.resolution" in result.stdout + result.stderr
