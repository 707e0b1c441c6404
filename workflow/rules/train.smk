rule patches:
    input:
        scenes=scene_outputs("train"),
    output:
        # Each folder is stood for by its manifest (written last, atomically): small and
        # checksummed, so DVC re-linking the folder's files (new mtimes) triggers nothing.
        "data/patches/manifest.json",
    log:
        "logs/patches/patches.log",
    benchmark:
        "benchmarks/patches/patches.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=0,
    params:
        stage_params("patches"),
    shell:
        "{VAEEDOF} patches --data data/mattingmfif/train --out data/patches 2>> {log}"


rule latents:
    input:
        patches=rules.patches.output,
    output:
        "data/latents/manifest.json",
    log:
        "logs/latents/latents.log",
    benchmark:
        "benchmarks/latents/latents.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=0,
    params:
        stage_params("latents"),
    shell:
        "{VAEEDOF} latents --patches data/patches --out data/latents 2>> {log}"


rule train:
    input:
        latents=rules.latents.output,
        patches=rules.patches.output,
    output:
        weights="models/fusion_ema.safetensors",
        info="models/fusion_ema.json",
    log:
        "logs/train/train.log",
    benchmark:
        "benchmarks/train/train.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=8000,
        runtime=1440,
        gpu=0,
        # Processes on the node (torchrun); the profile sets it: 2 on a CPU, one per GPU.
        nproc=1,
    params:
        stage_params("train"),
    shell:
        "{VAEEDOF} train --nproc {resources.nproc} --latents data/latents --patches data/patches --out models 2>> {log}"
