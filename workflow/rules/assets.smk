rule assets:
    output:
        index="resources/assets/index.json",
    params:
        stage_params("assets"),
    log:
        "logs/assets/assets.log",
    benchmark:
        "benchmarks/assets/assets.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=0,
    conda:
        ENV
    shell:
        "{VAEEDOF} assets build 2>> {log}"
