# MattingMFIF / VAEEDOF pipeline: the index of the workflow. Every rule is a thin call of the
# `vaeedof` CLI; params.yaml (validated before any job starts) is the single parameter source.


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
