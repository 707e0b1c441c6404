rule render:
    input:
        scene="data/scenes/{split}/{scene_id}.json",
        assets=rules.assets.output.index,
    output:
        # The scene's scene.json stands for its directory: Snakemake deletes declared outputs
        # before a rerun, and `vaeedof render` keeps renders whose fingerprint still matches.
        "data/mattingmfif/{split}/{scene_id}/scene.json",
    log:
        "logs/render/{split}/{scene_id}.log",
    benchmark:
        "benchmarks/render/{split}/{scene_id}.tsv"
    wildcard_constraints:
        split="train|test",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=1500,
        runtime=60,
        gpu=0,
    params:
        stage_params("render"),
    shell:
        "{VAEEDOF} render --scene {input.scene} --out data/mattingmfif/{wildcards.split}/{wildcards.scene_id} "
        "--threads {threads} --blender-log {log} 2>> {log}"


rule contact_sheet:
    input:
        contact_sheet_inputs,
    output:
        report(
            "reports/dataset/contact_sheet_{split}.png",
            caption="../report/dataset.rst",
        ),
    log:
        "logs/contact_sheet/{split}.log",
    benchmark:
        "benchmarks/contact_sheet/{split}.tsv"
    wildcard_constraints:
        split="train|test",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    params:
        stage_params("contact_sheet"),
    shell:
        "{VAEEDOF} contact-sheet --data data/mattingmfif/{wildcards.split} "
        "--out {output} 2>> {log}"
