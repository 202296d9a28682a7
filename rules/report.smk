# stage: report -- win rates per optimizer, test set and target, summary, plots, results browser.
# Outputs are flagged with report() so `snakemake --report report.html` shows them.


rule report:
    input:
        judgments=report_judgments(),
        answers=report_answers(),
        optimized=report_optimized(),
        turn_judgments=report_turn_judgments(),
        conversations=report_conversations(),
    output:
        table=report(
            result("report/winrates.parquet"),
            caption="../report/winrates_table.rst",
            category="Evaluation",
            labels={"figure": "win-rate table (Parquet)"},
        ),
        turn_table=result("report/winrates_turns.parquet"),  # multi-turn test sets, per turn (empty: none)
        summary=report(
            result("report/summary.md"),
            caption="../report/summary.rst",
            category="Evaluation",
            labels={"figure": "summary"},
        ),
        summary_html=report(
            result("report/summary.html"),
            caption="../report/summary_html.rst",
            category="Evaluation",
            labels={"figure": "summary table"},
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
    log:
        log_file("report/report.log"),
    benchmark:
        benchmark_file("report/report.tsv")
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=2000,
    params:
        settings=report_settings(),
    script:
        "../workflow_scripts/report.py"


# One self-contained HTML page to read the cases behind the win rates (bpo/browse/); its inputs
# are the report's, so the two never disagree on what was evaluated.
rule browse:
    input:
        judgments=rules.report.input.judgments,
        answers=rules.report.input.answers,
        optimized=rules.report.input.optimized,
        turn_judgments=rules.report.input.turn_judgments,
        conversations=rules.report.input.conversations,
        prompts=browse_prompts(),  # the model comparisons' questions
        winrates=rules.report.output.table,
        turn_winrates=rules.report.output.turn_table,
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
