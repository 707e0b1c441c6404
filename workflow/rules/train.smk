rule patches:
    input:
        scenes=scene_outputs("train"),
    output:
        directory("data/patches"),
    params:
        seed=config["seed"],
        patches=config["patches"],
    log:
        "logs/patches/patches.log",
    benchmark:
        "benchmarks/patches/patches.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "{VAEEDOF} patches --data data/mattingmfif/train --out {output} 2>> {log}"


rule latents:
    input:
        patches=rules.patches.output,
    output:
        directory("data/latents"),
    params:
        vae=config["vae"],
    log:
        "logs/latents/latents.log",
    benchmark:
        "benchmarks/latents/latents.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=0,
    shell:
        "{VAEEDOF} latents --patches {input.patches} --out {output} 2>> {log}"


rule train:
    input:
        latents=rules.latents.output,
        patches=rules.patches.output,
    output:
        weights="models/fusion_ema.safetensors",
        info="models/fusion_ema.json",
    params:
        seed=config["seed"],
        model=config["model"],
        train=config["train"],
    log:
        "logs/train/train.log",
    benchmark:
        "benchmarks/train/train.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=1440,
        gpu=0,
        nproc=1,
    shell:
        "torchrun --standalone --nnodes 1 --nproc-per-node {resources.nproc} --no-python "
        "{VAEEDOF} train --latents {input.latents} --patches {input.patches} --out models 2>> {log}"
