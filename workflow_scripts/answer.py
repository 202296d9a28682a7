"""Rule answer: an endpoint target answers the original and the optimized questions."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

from bpo.settings import LLMRuntime  # noqa: E402

if snakemake.rule == "answer_hf":  # noqa: F821
    # TRANSITIONAL (issue 9): rule answer_hf still points here until it gets its own script and
    # library entry point (bpo/eval/hf_target.py); delete this branch when that lands.
    from bpo.eval.answer import answer_rows, questions, read_items
    from bpo.eval.hf_target import generate_answers
    from bpo.schemas import ANSWERS, write_table

    t = snakemake.params.target  # noqa: F821
    items = read_items(snakemake.input.optimized)  # noqa: F821
    original, optimized = questions(items)
    out = [(text, status, "hf") for text, status in generate_answers(
        t["model"], original + optimized, max_new_tokens=t["max_tokens"], temperature=t["temperature"],
        top_p=t["top_p"], batch_size=t["batch_size"], seed=t["seed"] or 0, system_prompt=t["system_prompt"],
        dtype=t["dtype"])]
    write_table(answer_rows(items, snakemake.wildcards.target, out[: len(items)], out[len(items):]),  # noqa: F821
                snakemake.output.answers, ANSWERS)  # noqa: F821
else:
    from bpo.eval.answer import answer_testset
    from bpo.settings.evaluate import EndpointTargetSettings

    settings = EndpointTargetSettings.from_params(snakemake.params.settings)  # noqa: F821
    # limits, cache path, prices: runtime settings, read from config at run time (edits rerun nothing)
    runtime = LLMRuntime.from_config(snakemake.config, settings.endpoint.name)  # noqa: F821
    answer_testset(snakemake.input.optimized, snakemake.output.answers, settings, runtime)  # noqa: F821
