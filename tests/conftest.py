import copy
import os
import sys
from pathlib import Path

import pytest

from vaeedof import params as params_mod

ROOT = Path(__file__).resolve().parents[1]
SHARED_MIRROR = ROOT.parent / "shared" / "mirror"

# Make the venv's console scripts (vaeedof, snakemake, dvc) reachable from subprocesses.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")


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
