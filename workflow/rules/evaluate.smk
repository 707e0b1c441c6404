rule infer:
    input:
        weights=rules.train.output.weights,
        info=rules.train.output.info,
        scenes=scene_outputs("test"),
    output:
        "data/fused/manifest.json",
    log:
        "logs/infer/infer.log",
    benchmark:
        "benchmarks/infer/infer.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=6000,
        runtime=240,
        gpu=0,
    params:
        stage_params("infer"),
    shell:
        "{VAEEDOF} infer --data data/mattingmfif/test --out data/fused --checkpoint {input.weights} 2>> {log}"


rule evaluate:
    input:
        fused=rules.infer.output,
        weights=rules.train.output.weights,
    output:
        metrics="reports/metrics.json",
        table="reports/table.md",
        per_image="reports/per_image.csv",
        difficulty="reports/difficulty.csv",
        difficulty_plot=report(
            "reports/difficulty.png", caption="../report/difficulty.rst"
        ),
        sheet=report(
            "reports/contact_sheet_methods.png", caption="../report/methods.rst"
        ),
    log:
        "logs/evaluate/evaluate.log",
    benchmark:
        "benchmarks/evaluate/evaluate.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=0,
    params:
        stage_params("evaluate"),
    shell:
        "{VAEEDOF} evaluate --data data/mattingmfif/test --fused data/fused --reports reports "
        "--checkpoint {input.weights} > /dev/null 2>> {log}"


rule throughput:
    input:
        weights=rules.train.output.weights,
    output:
        table="reports/throughput.csv",
        plot=report("reports/throughput.png", caption="../report/throughput.rst"),
    log:
        "logs/throughput/throughput.log",
    benchmark:
        "benchmarks/throughput/throughput.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=0,
    params:
        stage_params("throughput"),
    shell:
        "{VAEEDOF} throughput --reports reports --checkpoint {input.weights} 2>> {log}"


rule real_sheet:
    input:
        weights=rules.train.output.weights,
    output:
        report("reports/contact_sheet_real.png", caption="../report/real.rst"),
    log:
        "logs/real_sheet/real_sheet.log",
    benchmark:
        "benchmarks/real_sheet/real_sheet.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=0,
    params:
        stage_params("real_sheet"),
    shell:
        "{VAEEDOF} real-sheet --out {output} --checkpoint {input.weights} 2>> {log}"


rule handheld:
    input:
        scenes=scene_outputs("test"),
    output:
        "data/handheld/test/manifest.json",
    log:
        "logs/handheld/handheld.log",
    benchmark:
        "benchmarks/handheld/handheld.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=0,
    params:
        stage_params("handheld"),
    shell:
        "{VAEEDOF} handheld --data data/mattingmfif/test --out data/handheld/test 2>> {log}"


rule infer_handheld:
    input:
        weights=rules.train.output.weights,
        info=rules.train.output.info,
        handheld=rules.handheld.output,
    output:
        "data/fused_handheld/manifest.json",
    log:
        "logs/infer_handheld/infer_handheld.log",
    benchmark:
        "benchmarks/infer_handheld/infer_handheld.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=6000,
        runtime=240,
        gpu=0,
    params:
        stage_params("infer_handheld"),
    shell:
        "{VAEEDOF} infer --data data/handheld/test --out data/fused_handheld --align auto "
        "--checkpoint {input.weights} 2>> {log}"


rule evaluate_handheld:
    input:
        fused=rules.infer_handheld.output,
        weights=rules.train.output.weights,
    output:
        metrics="reports/handheld/metrics.json",
        table="reports/handheld/table.md",
        per_image="reports/handheld/per_image.csv",
    log:
        "logs/evaluate_handheld/evaluate_handheld.log",
    benchmark:
        "benchmarks/evaluate_handheld/evaluate_handheld.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=0,
    params:
        stage_params("evaluate_handheld"),
    shell:
        "{VAEEDOF} evaluate --data data/handheld/test --fused data/fused_handheld --reports reports/handheld "
        "--variant handheld --checkpoint {input.weights} > /dev/null 2>> {log}"


rule real_metrics:
    input:
        weights=rules.train.output.weights,
    output:
        "reports/real_metrics.csv",
    log:
        "logs/real_metrics/real_metrics.log",
    benchmark:
        "benchmarks/real_metrics/real_metrics.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=0,
    params:
        stage_params("real_metrics"),
    shell:
        "{VAEEDOF} real-metrics --reports reports --checkpoint {input.weights} 2>> {log}"
