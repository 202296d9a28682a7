# stage: report -- win rates per optimizer, test set and target, Markdown summary, plots.
# Outputs are flagged with report() so `snakemake --report report.html` shows them.


rule report:
    input:
        judgments=report_judgments(),
        answers=report_answers(),
        optimized=report_optimized(),
    output:
        table=report(
            result("report/winrates.parquet"),
            caption="../report/winrates_table.rst",
            category="Evaluation",
            labels={"figure": "win-rate table (Parquet)"},
        ),
        summary=report(
            result("report/summary.md"),
            caption="../report/summary.rst",
            category="Evaluation",
            labels={"figure": "summary"},
        ),
        plot=report(
            result("report/winrates.png"),
            caption="../report/winrates.rst",
            category="Evaluation",
            labels={"figure": "win / tie / lose"},
        ),
        compare_plot=report(
            result("report/compare.png"),
            caption="../report/compare.rst",
            category="Evaluation",
            labels={"figure": "optimizers compared"},
        ),
        intrinsic=report(
            result("report/intrinsic.json"),
            caption="../report/intrinsic.rst",
            category="Evaluation",
            labels={"figure": "similarity to reference rewrites"},
        ),
    params:
        settings=report_settings(),
    log:
        log_file("report/report.log"),
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=2000,
    script:
        "../workflow_scripts/report.py"
