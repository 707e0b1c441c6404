# One job per scene (local: cheap), so adding scenes leaves existing ones and their renders alone.
localrules:
    scenes,


rule scenes:
    input:
        assets=rules.assets.output.index,
    output:
        "data/scenes/{split}/{scene_id}.json",
    log:
        "logs/scenes/{split}/{scene_id}.log",
    benchmark:
        "benchmarks/scenes/{split}/{scene_id}.tsv"
    wildcard_constraints:
        split="train|test",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
        gpu=0,
    params:
        stage_params("scenes", per_job=True),
    shell:
        "{VAEEDOF} scenes --assets {input.assets} --out data/scenes --only {wildcards.scene_id} 2>> {log}"
