# MattingMFIF / VAEEDOF pipeline: the index of the workflow. Every rule is a thin call of the
# `vaeedof` CLI; params.yaml (validated before any job starts) is the single parameter source, a
# scale's overlay over it with --configfile (config/ci.yaml, config/paper.yaml, config/release.yaml).


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/assets.smk"
include: "workflow/rules/scenes.smk"
include: "workflow/rules/render.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    default_target: True
    input:
        all_outputs(),


# The rendered, versioned MattingMFIF dataset alone (no VAE weights needed).
rule dataset:
    input:
        dataset_outputs(),


# A complete run is recorded in dvc.lock (the stages it built with the values DVC reads: the
# merged file of `vaeedof configure`), so a `dvc repro` afterwards finds them current. A run of
# other targets leaves dvc.lock alone: the stages it did not ask for may be out of date. So does
# --touch, which builds nothing (after `dvc pull`, DVC has recorded the outputs already).
onsuccess:
    if set(workflow.dag_settings.targets) <= {"all"} and not workflow.touch:
        shell("mkdir -p logs && {VAEEDOF} dvc-commit 2>> logs/dvc-commit.log")
