rule render:
    input:
        scene="data/scenes/{split}/{scene_id}.json",
        assets=rules.assets.output.index,
    output:
        directory("data/mattingmfif/{split}/{scene_id}"),
    params:
        render=config["render"],
    log:
        "logs/render/{split}/{scene_id}.log",
    benchmark:
        "benchmarks/render/{split}/{scene_id}.tsv"
    wildcard_constraints:
        split="train|test",
    threads: 2
    resources:
        mem_mb=1500,
        runtime=60,
        gpu=0,
    shell:
        "{VAEEDOF} render --scene {input.scene} --out {output} "
        "--threads {threads} --blender-log {log} 2>> {log}"


rule contact_sheet:
    input:
        contact_sheet_inputs,
    output:
        "reports/dataset/contact_sheet_{split}.png",
    log:
        "logs/contact_sheet/{split}.log",
    benchmark:
        "benchmarks/contact_sheet/{split}.tsv"
    wildcard_constraints:
        split="train|test",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "{VAEEDOF} contact-sheet --data data/mattingmfif/{wildcards.split} "
        "--out {output} 2>> {log}"
