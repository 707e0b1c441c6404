import sys

from vaeedof import stages
from vaeedof.errors import VaeedofError
from vaeedof.params import validate, write_effective
from vaeedof.scenes import SPLITS, scene_ids

# Validate before any job starts; one clear line naming the key, then stop.
try:
    _validated = validate(dict(config), "params (params.yaml + --configfile/--config)")
except VaeedofError as exc:
    sys.exit(f"vaeedof: error: {exc}")
config.clear()
config.update(_validated)

# Every job's command names the effective parameters (--configfile/--config included) it reads,
# so a command copied from a log reproduces the job. The file is named by its content: a second
# invocation with other parameters (a dry run, a run refused by the directory lock) never changes
# what a running workflow reads.
EFFECTIVE_PARAMS = write_effective(config, ".snakemake/vaeedof")
VAEEDOF = f"vaeedof --params {EFFECTIVE_PARAMS}"
# The software every rule runs (used with --software-deployment-method conda; setup.sh builds the
# same environment as a venv).
ENV = "../envs/vaeedof.yaml"


def stage_params(name, per_job=False):
    """A rule's params: the values of the parameter keys its stage reads and a hash of the code it
    runs (the stage table, vaeedof.stages), so a change of either reruns it, as in DVC. A per-scene
    job leaves out the scene counts, which only decide how many jobs there are."""
    return {
        "values": stages.values(name, config, per_job=per_job),
        "code": stages.code_version(name),
    }


def split_scene_ids(split):
    return scene_ids(split, config["scenes"][split])


def scene_outputs(split):
    """Each scene's scene.json, which stands for its rendered directory."""
    return expand(
        "data/mattingmfif/{split}/{scene_id}/scene.json",
        split=split,
        scene_id=split_scene_ids(split),
    )


def contact_sheet_inputs(wildcards):
    return scene_outputs(wildcards.split)


def dataset_outputs():
    outputs = []
    for split in SPLITS:
        outputs += scene_outputs(split)
        outputs.append(f"reports/dataset/contact_sheet_{split}.png")
    return outputs


def all_outputs():
    outputs = dataset_outputs() + [
        rules.train.output.weights,
        rules.evaluate.output.table,
        rules.evaluate_handheld.output.table,
        rules.throughput.output.table,
    ]
    if config["evaluate"]["real_stacks"]:
        outputs += ["reports/contact_sheet_real.png", "reports/real_metrics.csv"]
    return outputs
