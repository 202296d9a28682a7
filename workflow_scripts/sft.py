"""Rule sft: critiques (or a BPO-format dataset) -> results/sft/{train,val}.parquet + filter report."""

import sys

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

import logging  # noqa: E402

from bpo.schemas import SchemaError  # noqa: E402
from bpo.sft import FilterRules, SFTError, build_sft  # noqa: E402

s = dict(snakemake.params.settings)  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821
try:
    build_sft(
        mode=s["source"],
        pairs_path=inp.get("pairs"),
        critique_paths=list(inp.get("critiques", [])),
        bpo_dataset=s.get("bpo_dataset"),
        train_path=out.train,
        val_path=out.val,
        report_path=out.report,
        seed=s["seed"],
        val_fraction=s["val_fraction"],
        formats=s["context_formats"],
        rules=FilterRules(
            max_original_to_optimized=s["max_original_to_optimized"],
            max_optimized_to_original=s["max_optimized_to_original"],
            protected_markers=tuple(s["protected_markers"]),
            length_rules_with_context=s["length_rules_with_context"],
        ),
    )
except (SFTError, SchemaError) as exc:
    logging.getLogger("bpo.sft").error("%s", exc)
    sys.exit(1)
