"""Rule sft: critiques (or a BPO-format dataset) -> results/sft/{train,val}.parquet + filter report."""

from bpo.logging_setup import exit_on, setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from bpo.settings import SFTSettings  # noqa: E402
from bpo.sft import build_sft, expected_stops  # noqa: E402

inp, out = snakemake.input, snakemake.output  # noqa: F821
with exit_on(*expected_stops(), logger="bpo.sft"):
    build_sft(
        SFTSettings.from_params(snakemake.params.settings),  # noqa: F821
        train_path=out.train,
        val_path=out.val,
        report_path=out.report,
        pairs_path=inp.get("pairs"),
        critique_paths=list(inp.get("critiques", [])),
    )
