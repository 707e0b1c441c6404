rule assets:
    output:
        index="resources/assets/index.json",
    log:
        "logs/assets/assets.log",
    benchmark:
        "benchmarks/assets/assets.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=0,
    params:
        stage_params("assets"),
    shell:
        "{VAEEDOF} assets build 2>> {log}"
