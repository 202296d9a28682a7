"""Rule pair_students: the two students' answers to one test set, paired for the judge."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.sft_data import pair_model_answers  # noqa: E402

sm = snakemake  # noqa: F821
pair_model_answers(sm.input.b, sm.input.a, out_answers=sm.output.answers, out_prompts=sm.output.prompts)
