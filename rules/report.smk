# stage: report -- win rates per test set and target, Markdown summary, bar chart, results browser.
# Outputs are flagged with report() so `snakemake --report report.html` shows them.


rule report:
    input:
        judgments=[result(f"eval/{ts}/{tg}/judgments.parquet") for ts, tg in eval_pairs()],
        answers=[result(f"eval/{ts}/{tg}/answers.parquet") for ts, tg in eval_pairs()],
        optimized=[result(f"eval/{ts}/optimized.parquet") for ts in eval_testsets()],
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


# One self-contained HTML page to read the cases behind the win rates (bpo/browse/); its inputs
# are the report's, so the two never disagree on what was evaluated.
rule browse:
    input:
        judgments=rules.report.input.judgments,
        answers=rules.report.input.answers,
        optimized=rules.report.input.optimized,
        winrates=rules.report.output.table,
    output:
        html=report(
            result("report/browse.html"),
            caption="../report/browse.rst",
            category="Evaluation",
            labels={"figure": "results browser"},
        ),
    log:
        log_file("report/browse.log"),
    benchmark:
        benchmark_file("report/browse.tsv")
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=2000,
    script:
        "../workflow_scripts/browse.py"
