"""The workflow on a real Slurm cluster: ci/slurm/start.sh brings up a throw-away single-node Slurm
22.05 (munge, MariaDB, slurmdbd, slurmctld, slurmd; as root), described as the node profiles/slurm
is written for (32 CPUs, 128 GB, 4 GPUs by name, partitions cpu and gpu). Snakemake runs the
config/ci.yaml workflow through --workflow-profile profiles/slurm as shipped: every rule but the
local ones is a Slurm job, training one job of `nproc` processes; the training job cancelled with
scancel mid-way is retried and resumes from its checkpoint; a second run does nothing; the
outputs are what the local workflow makes; the multi-node training script, on one node, trains the
same model as the (interrupted) workflow's job; nothing is left running afterwards."""

import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from .conftest import ROOT, SHARED_MIRROR, copy_checkout
from .test_workflow import _planned_rules, _run

pytest.importorskip("bpy")
MIRROR = os.environ.get("VAEEDOF_ASSET_MIRROR") or str(SHARED_MIRROR)
PROGRAMS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sacctmgr")
pytestmark = [
    pytest.mark.slow, pytest.mark.blender,
    pytest.mark.skipif(not os.path.exists(os.path.join(MIRROR, "taef2_encoder.pth")),
                       reason="no TAEF2 weights in an asset mirror"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a throw-away Slurm cluster (ci/slurm/start.sh) needs root"),
    pytest.mark.skipif(not all(shutil.which(p) for p in PROGRAMS),
                       reason="Slurm 22.05 not installed (apt-get install slurm-wlm slurmdbd munge "
                              "mariadb-server; .ci/run does it as root)"),
]
# Bounds on every wait on the cluster: a hung job must fail the test, not the CI run.
WORKFLOW_LIMIT_S = 1800
# config/ci.yaml, checkpointing every 2 of its 20 steps: a cancel lands between a checkpoint and the
# end of a training that takes about 10 s.
OVERLAY = "train:\n  checkpoint_every: 2\n"
CONFIG = ("--configfile", "config/ci.yaml", "slurm-test.yaml")
SLURM = ("snakemake", "--workflow-profile", "profiles/slurm", *CONFIG,
         # The plugin's first status check (its later ones come every 40 s).
         "--slurm-init-seconds-before-status-checks", "5")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(["bash", str(ROOT / "ci/slurm/start.sh"), str(state), "--cpus", "32",
                              "--memory", "131072", "--gpus", "4"], capture_output=True, text=True,
                             timeout=180)
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        # One small job before the workflow: a cluster that cannot run one fails here, bounded.
        environ = {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
        _slurm(["sbatch", "--wait", "-t", "1", "-o", str(state / "first-job.log"), "--wrap", "true"], environ)
        assert _slurm(["sacct", "-X", "-n", "-o", "State"], environ).split() == ["COMPLETED"]
        yield state
    finally:  # (a start that failed has stopped what it started)
        record = state / "pids"
        pids = [int(line.split()[1]) for line in record.read_text().splitlines()] if record.exists() else []
        subprocess.run(["bash", str(ROOT / "ci/slurm/stop.sh"), str(state)], timeout=120, check=True)
        assert not [pid for pid in pids if _alive(pid)], "daemons left running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def env(cluster, tmp_path_factory):
    work = copy_checkout(tmp_path_factory.mktemp("project"))
    # Jobs get the submitting environment (sbatch --export=ALL): the venv, the copy's package.
    environ = {**os.environ, "SLURM_CONF": str(cluster / "slurm.conf"), "USER": "root",
               "PYTHONPATH": str(work / "src"), "VAEEDOF_ASSET_MIRROR": MIRROR}
    environ.pop("MLFLOW_TRACKING_URI", None)
    (work / "slurm-test.yaml").write_text(OVERLAY)
    subprocess.run(["vaeedof", "configure", "config/ci.yaml", "slurm-test.yaml"], cwd=work, env=environ,
                   check=True, capture_output=True)
    return work, environ


def _slurm(cmd, environ, timeout=60) -> str:
    return subprocess.run(cmd, env=environ, capture_output=True, text=True, check=True,
                          timeout=timeout).stdout


def _train_job(environ) -> str | None:
    """The Slurm id of the running training job (the plugin puts the rule in the comment)."""
    for line in _slurm(["squeue", "-h", "-t", "R", "-o", "%i %k"], environ).splitlines():
        job, comment = line.split(maxsplit=1)
        if comment == "rule_train":
            return job
    return None


@pytest.fixture(scope="module")
def run(env):
    """The whole workflow on the cluster; the training job is cancelled once it has written its
    first checkpoint. Returns (project, environment, Snakemake's output, cancelled job id)."""
    work, environ = env
    log = open(work / "slurm-run.log", "w")
    proc = subprocess.Popen(["timeout", "-s", "INT", str(WORKFLOW_LIMIT_S), *SLURM], cwd=work, env=environ,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    cancelled = None
    try:
        deadline = time.monotonic() + WORKFLOW_LIMIT_S
        while proc.poll() is None and cancelled is None and time.monotonic() < deadline:
            if list(work.glob("models/checkpoints/*/step_*.pt")) and (job := _train_job(environ)):
                _slurm(["scancel", job], environ)
                cancelled = job
            time.sleep(0.2)
        proc.wait(timeout=max(1, deadline - time.monotonic() + 60))
    finally:
        if proc.poll() is None:  # SIGINT: Snakemake cancels its Slurm jobs (SIGTERM does not stop it)
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=120)
        log.close()
    output = (work / "slurm-run.log").read_text()
    assert proc.returncode == 0, output[-5000:]
    return work, environ, output, cancelled


def _accounting(environ) -> list[dict]:
    """Every job the cluster ran (from slurmdbd, as the plugin reads states)."""
    fields = ("JobID", "State", "Comment", "AllocTRES")
    out = _slurm(["sacct", "-X", "-n", "-P", "-a", "-o", ",".join(fields)], environ)
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line]


def test_every_rule_runs_as_a_slurm_job(run):
    work, environ, output, _ = run
    jobs = _accounting(environ)
    completed = {}
    for job in jobs:  # the workflow's jobs (the plugin names the rule in the comment)
        if job["State"] == "COMPLETED" and job["Comment"].startswith("rule_"):
            rule = re.match(r"rule_([a-z_]+?)(_wildcards_.*)?$", job["Comment"]).group(1)
            completed[rule] = completed.get(rule, 0) + 1
    # `all` is the target; `scenes` is a declared local rule (one small JSON file per scene).
    local = {"all", "scenes"}
    planned = _planned_rules(output)
    assert planned["render"] == 8 and planned["scenes"] == 8, planned
    assert completed == {rule: n for rule, n in planned.items() if rule not in local}
    assert not list((work / ".snakemake/slurm_logs").glob("rule_scenes"))


def test_training_is_one_job_of_nproc_processes_on_four_gpus(run):
    work, environ, _, _ = run
    [train] = [j for j in _accounting(environ) if j["Comment"] == "rule_train" and j["State"] == "COMPLETED"]
    # profiles/slurm: one task holding 4 GPUs and 32 CPUs; torchrun starts one process per GPU.
    assert "gres/gpu=4" in train["AllocTRES"] and "cpu=32" in train["AllocTRES"], train
    assert "training on 4 process(es)" in (work / "logs/train/train.log").read_text()


def test_a_cancelled_training_job_is_retried_and_resumes(run):
    work, environ, output, cancelled = run
    assert cancelled, "the training finished before a checkpoint could be cancelled"
    states = {j["JobID"]: j["State"] for j in _accounting(environ)}
    assert states[cancelled].startswith("CANCELLED")
    assert f"SLURM-job '{cancelled}' failed" in output
    train_log = (work / "logs/train/train.log").read_text()
    resumed = re.search(r"resuming from \S+ step (\d+)", train_log)
    assert resumed and int(resumed.group(1)) > 0, train_log[-2000:]
    assert (work / "models/fusion_ema.safetensors").stat().st_size > 0


def test_outputs_are_the_local_workflows(run):
    work, environ, output, _ = run
    for name in ("reports/table.md", "reports/metrics.json", "reports/difficulty.png",
                 "reports/throughput.png", "reports/dataset/contact_sheet_train.png",
                 "reports/handheld/table.md", "models/fusion_ema.safetensors"):
        assert (work / name).stat().st_size > 0, name
    # The local profile finds everything current: same parameters, code and software.
    assert "Nothing to be done" in _run(["snakemake", "-n", *CONFIG], work)
    # A render job's logged command, run here outside Slurm, makes the same pixels.
    scene = "data/mattingmfif/test/test_00000"
    [command] = [line.removeprefix("Shell command: ") for line in output.splitlines()
                 if line.startswith("Shell command: ") and f"--out {scene} " in line]
    local = work / "local-render"
    command = command.replace(f"--out {scene} ", f"--out {local} ").split(" --blender-log ")[0]
    subprocess.run(command, shell=True, cwd=work, env=environ, check=True, capture_output=True, timeout=600)
    images = sorted(p.name for p in (work / scene).glob("*.png"))
    assert images == sorted(p.name for p in local.glob("*.png")) and "gt.png" in images
    for name in images:
        pixels = [np.asarray(Image.open(folder / name)) for folder in (work / scene, local)]
        assert np.array_equal(*pixels), name


def test_a_second_run_submits_nothing(run):
    work, environ, _, _ = run
    before = len(_accounting(environ))
    again = subprocess.run(["timeout", "-s", "INT", "600", *SLURM], cwd=work, env=environ,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr
    assert len(_accounting(environ)) == before


def test_the_multi_node_training_script_trains_the_same_model(run):
    work, environ, _, _ = run
    out = work / "models-nodes"
    submitted = subprocess.run(["sbatch", "--wait", "--nodes", "1", "-o", str(work / "train-nodes.log"),
                                "profiles/slurm/train-nodes.sbatch", str(out)], cwd=work, env=environ,
                               capture_output=True, text=True, timeout=600)
    log = (work / "train-nodes.log").read_text()
    assert submitted.returncode == 0, submitted.stderr + log[-3000:]
    assert "training on 4 process(es)" in log
    # The workflow's training was cancelled and resumed, this one ran through: the same weights.
    model = "fusion_ema.safetensors"
    assert (out / model).read_bytes() == (work / "models" / model).read_bytes()
