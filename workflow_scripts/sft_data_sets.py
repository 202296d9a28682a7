"""Rule sft_data_sets: the two students' SFT sets from the same records of reproduce.json."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.eval.sft_data import student_datasets  # noqa: E402
from bpo.settings import LLMRuntime  # noqa: E402
from bpo.settings.sft_data import StudentDataSettings  # noqa: E402

sm = snakemake  # noqa: F821
settings = StudentDataSettings.from_params(sm.params.settings)
# limits and cache path: runtime, read from config (regenerate only: keep calls nothing)
runtime = LLMRuntime.from_config(sm.config, settings.target.call.endpoint.name) if settings.target else None
student_datasets(sm.input.reproduce, settings, dict(sm.output.items()), runtime)
