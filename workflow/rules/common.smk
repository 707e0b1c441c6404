import sys
from pathlib import Path

import yaml

from vaeedof.errors import VaeedofError
from vaeedof.params import validate
from vaeedof.scenes import SPLITS, scene_ids


# Validate before any job starts; one clear line naming the key, then stop.
try:
    _validated = validate(dict(config), "params (params.yaml + --configfile/--config)")
except VaeedofError as exc:
    sys.exit(f"vaeedof: error: {exc}")
config.clear()
config.update(_validated)

# The CLI reads the same effective parameters Snakemake uses (--configfile/--config included).
# Written only when it changes, outside any rule's inputs, so it triggers nothing itself.
EFFECTIVE_PARAMS = Path(".snakemake/vaeedof/params.yaml")
_text = yaml.safe_dump(config, sort_keys=True)
if not EFFECTIVE_PARAMS.exists() or EFFECTIVE_PARAMS.read_text() != _text:
    EFFECTIVE_PARAMS.parent.mkdir(parents=True, exist_ok=True)
    EFFECTIVE_PARAMS.write_text(_text)

VAEEDOF = f"vaeedof --params {EFFECTIVE_PARAMS}"


def split_scene_ids(split):
    return scene_ids(split, config["scenes"][split])


def scene_dirs(split):
    return expand("data/mattingmfif/{split}/{scene_id}", split=split, scene_id=split_scene_ids(split))


def contact_sheet_inputs(wildcards):
    return scene_dirs(wildcards.split)


def dataset_outputs():
    outputs = []
    for split in SPLITS:
        outputs += scene_dirs(split)
        outputs.append(f"reports/dataset/contact_sheet_{split}.png")
    return outputs


def all_outputs():
    return dataset_outputs() + [rules.train.output.weights]
