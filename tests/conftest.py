import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vaeedof import params as params_mod

ROOT = Path(__file__).resolve().parents[1]
SHARED_MIRROR = ROOT.parent / "shared" / "mirror"

# Make the venv's console scripts (vaeedof, snakemake, dvc) reachable from subprocesses.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")


def copy_checkout(work: Path) -> Path:
    """The project as a clean checkout would have it (tracked files and new ones git does not
    ignore: no venv, data or outputs), copied into `work`, a git repository of its own."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, text=True,
                           capture_output=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, work / name)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=ci@localhost", "-c", "user.name=ci", "commit", "-qm", "ci"]):
        subprocess.run(cmd, cwd=work, check=True, capture_output=True)
    return work


def tiny_params(**scene_overrides) -> dict:
    """Small, fast parameters: a few scenes at low resolution."""
    raw = params_mod.load(ROOT / "params.yaml")
    raw = copy.deepcopy(raw)
    # Generated assets: the suite never needs the photographs' mirror or the network.
    raw["assets"].update(subjects="procedural", backgrounds="procedural", hdris="procedural")
    raw["assets"]["procedural"].update(subjects_train=6, subjects_test=3, backgrounds_train=2,
                                       backgrounds_test=1, hdris=2, subject_size=64, hdri_width=64)
    raw["scenes"].update(train=2, test=1, **scene_overrides)
    raw["render"].update(resolution=48, crop=None, test_crop=None, samples=4)
    return params_mod.validate(raw)


@pytest.fixture
def params():
    return tiny_params()


@pytest.fixture
def asset_index(tmp_path, params, monkeypatch):
    from vaeedof.assets.build import build, load_index

    monkeypatch.chdir(tmp_path)
    return load_index(build(params, "resources"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """An untrained (mean-selecting) model for the real TAEF2, hybrid head included."""
    if not (SHARED_MIRROR / "taef2_encoder.pth").exists():
        pytest.skip("no TAEF2 weights")
    from safetensors.torch import save_file

    from vaeedof.nets.unet import FusionUNet
    from vaeedof.nets.vae import load_vae

    root = tmp_path_factory.mktemp("model")
    os.environ["VAEEDOF_ASSET_MIRROR"] = str(SHARED_MIRROR)
    vae = load_vae("taef2", root / "resources")
    model = FusionUNet(32, 7, (16, 32, 64), 2)
    save_file(model.state_dict(), str(root / "m.safetensors"))
    (root / "m.json").write_text(json.dumps({
        "vae": "taef2", "vae_checksums": vae.checksums, "latent_channels": 32, "max_inputs": 7,
        "widths": [16, 32, 64], "attention_heads": 2, "hybrid_trained": True, "hybrid_radius": 2}))
    return root
