rule scenes:
    input:
        assets=rules.assets.output.index,
    output:
        [f"data/scenes/{split}/{scene_id}.json" for split in SPLITS for scene_id in split_scene_ids(split)],
    params:
        seed=config["seed"],
        scenes=config["scenes"],
    log:
        "logs/scenes/scenes.log",
    benchmark:
        "benchmarks/scenes/scenes.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "{VAEEDOF} scenes --assets {input.assets} --out data/scenes 2>> {log}"
