# Black-box Prompt Optimization (BPO) workflow: preference data -> critiques -> SFT data
# -> optimizer training [-> refinement rounds: candidates, answers, judgments, preferences, DPO]
# -> optimized test prompts -> target answers -> pairwise judging -> report.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


# One path segment per wildcard, for every rule; rules narrow a wildcard further where only some
# names fit (e.g. optimize_identity takes only the identity optimizers).
wildcard_constraints:
    testset="[^/]+",
    optimizer="[^/]+",
    target="[^/]+",
    student="[^/]+",
    filename="[^/]+",


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/data.smk"
include: "rules/critique.smk"
include: "rules/sft.smk"
include: "rules/train.smk"
include: "rules/refine.smk"
include: "rules/evaluate.smk"


# Only when switched on: its fixed names (student_bpo, student_original) are free otherwise.
if PLAN.sft_data:

    include: "rules/sft_data.smk"


include: "rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
