"""`bpo` command line: the library's entry points outside Snakemake.

``bpo optimize`` rewrites prompts given on the command line (printed) or a file (the file mode
below: Parquet out, through the evaluation stage's code so the rows match the workflow's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _optimizer_defaults() -> dict:
    """An ``eval.optimizers`` entry's schema defaults: the CLI decodes as the workflow does."""
    from bpo.settings.config import load_schema

    props = load_schema()["properties"]["eval"]["properties"]["optimizers"]["additionalProperties"]["properties"]
    return {k: v["default"] for k, v in props.items() if "default" in v}


def _generation_settings(args: argparse.Namespace):
    from bpo.settings.generation import GenerationSettings

    return GenerationSettings(
        engine=args.engine,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        greedy=args.greedy,
    )


def read_prompt_file(path: str, column: str, context_column: str | None):
    """The prompts of a jsonl[.gz]/json/parquet/csv/tsv file (JSON: a list of objects or
    ``{"data": [...]}``) as a DataFrame indexed by each record's number in the file, and the
    counted, located drops: a record that cannot be parsed, lacks the prompt column or holds no
    text there is dropped; a file unreadable as a whole is a ValueError naming it."""
    import pandas as pd

    from bpo.optimizer.conversations import read_input_records

    records = read_input_records(path)
    if not records.records_read:
        raise ValueError(f"--input {path}: no records (the file is empty)")
    present = set().union(*records.rows)
    for col in [column] + ([context_column] if context_column else []):
        if records.rows and col not in present:
            raise ValueError(f"--input {path}: no column {col!r} (columns: {sorted(present)})")
    keep = []
    for i, row in enumerate(records.rows):
        problem = _prompt_problem(row, column, context_column)
        if problem:
            reason, field = problem
            records.count_drop(reason, records.location(i), field)
        else:
            keep.append(i)
    df = pd.DataFrame([records.rows[i] for i in keep], index=[records.numbers[i] for i in keep])
    return df, records.dropped


def _prompt_problem(row: dict, column: str, context_column: str | None) -> tuple[str, str] | None:
    """(drop reason, field) when a record cannot be rewritten, else None."""
    if column not in row:
        return "malformed_missing_field", column
    if not isinstance(row[column], str):
        return "malformed_wrong_type", column
    ctx = row.get(context_column) if context_column else None
    if not (ctx is None or isinstance(ctx, str) or (isinstance(ctx, float) and ctx != ctx)):  # NaN: pandas' null
        return "malformed_wrong_type", context_column
    return None


def _first_column(df, names):
    return next((n for n in names if n in df.columns), None)


def optimize_file(df, args: argparse.Namespace, settings) -> int:
    """Rewrite the rows of ``df`` and write the OPTIMIZED schema to ``args.output``; returns
    the number of fallbacks.

    Rows go through the evaluation stage's code (``with_context`` mode), so a file rewritten
    here matches what the workflow produces: the optimizer sees instruction + context and the
    context must come back verbatim. Ids come from an ``item_id``/``id``/``question_id``/``idx``
    column (else the row number), ``testset`` is the input file's stem, the reference rewrite
    comes from a ``reference_optimized``/``optimized_prompt`` column when present.
    """
    from bpo.eval.optimize import optimize_items, write_optimized
    from bpo.eval.testsets import TestItem

    id_col = _first_column(df, ["item_id", "id", "question_id", "idx"])
    ref_col = _first_column(df, ["reference_optimized", "optimized_prompt"])
    items = []
    for i in range(len(df)):
        ctx = df[args.context_column].iloc[i] if args.context_column else ""
        ref = df[ref_col].iloc[i] if ref_col else None
        # without an id column, the record's number in the file: it does not shift when a line is dropped
        item_id = str(df[id_col].iloc[i]) if id_col else str(df.index[i])
        items.append(
            TestItem(
                item_id=item_id,
                instruction=df[args.column].iloc[i],
                context=ctx if isinstance(ctx, str) else "",
                reference_optimized=ref if isinstance(ref, str) else None,
            )
        )
    rewritten, engine = optimize_items(
        items, args.model, settings, context_mode="with_context", format_override=args.format
    )
    # the optimizer column names the model that rewrote (there is no eval.optimizers entry here)
    write_optimized(items, rewritten, Path(args.input).name.split(".")[0], args.model, engine, args.output)
    return sum(reason is not None for _, reason in rewritten)


def _optimize(args: argparse.Namespace) -> int:
    from bpo.logging_setup import setup_logging
    from bpo.optimizer import optimize_prompts

    setup_logging(None)
    from bpo.generation.model import model_folder_problem

    problem = model_folder_problem(args.model)
    if problem:
        raise CLIError(f"--model {problem}")
    try:
        settings = _generation_settings(args)
    except ValueError as exc:
        print(f"bpo optimize: {exc}", file=sys.stderr)
        return 2
    if args.input:
        if args.prompts:
            print("bpo optimize: give prompts or --input, not both", file=sys.stderr)
            return 2
        if not args.output:
            print("bpo optimize: --input needs --output FILE.parquet", file=sys.stderr)
            return 2
        from bpo.optimizer.conversations import is_messages_file

        if Path(args.input).exists() and is_messages_file(args.input):
            return _optimize_conversations(args, settings)
        try:
            df, dropped = read_prompt_file(args.input, args.column, args.context_column)
        except (OSError, ValueError) as exc:
            print(f"bpo optimize: {exc}", file=sys.stderr)
            return 2
        _report_drops(dropped)
        if df.empty:
            print(f"bpo optimize: --input {args.input}: no usable record ({dict(dropped)})", file=sys.stderr)
            return 2
        n_fb = optimize_file(df, args, settings)
        print(
            f"wrote {len(df)} rows to {args.output} ({n_fb} kept the original prompt, "
            f"{sum(dropped.values())} record(s) dropped)",
            file=sys.stderr,
        )
        return 0
    if not args.prompts:
        print("bpo optimize: give one or more prompts, or --input FILE", file=sys.stderr)
        return 2
    rewrites = optimize_prompts(args.model, args.prompts, settings, format_override=args.format)
    for prompt, r in zip(args.prompts, rewrites.results):
        if len(args.prompts) > 1:
            print(f"### {prompt}")
        print(r.text)
        if r.fallback_reason:
            print(f"(optimizer output unusable: {r.fallback_reason}; original prompt kept)", file=sys.stderr)
    return 0


def _optimize_conversations(args: argparse.Namespace, settings) -> int:
    """Messages mode: OpenAI-style conversations in, the same records with the last user message
    rewritten out (JSONL), conditioned on the earlier turns."""
    from bpo.optimizer.conversations import read_conversations, rewrite_conversations, write_jsonl

    if not args.output.endswith(".jsonl"):
        print(
            "bpo optimize: an --input of messages records needs --output FILE.jsonl (the records come back "
            "in their own shape)",
            file=sys.stderr,
        )
        return 2
    try:
        conversations, dropped = read_conversations(args.input, include_system=args.include_system)
    except (OSError, ValueError) as exc:
        print(f"bpo optimize: {exc}", file=sys.stderr)
        return 2
    _report_drops(dropped)
    if not conversations:
        print(f"bpo optimize: --input {args.input}: no usable conversation ({dict(dropped)})", file=sys.stderr)
        return 2
    out = rewrite_conversations(
        conversations, args.model, settings, format_override=args.format, max_history_tokens=args.max_history_tokens
    )
    write_jsonl(out, args.output)
    n_fb = sum(r["bpo"]["fallback_reason"] is not None for r in out)
    cut = sum(r["bpo"]["history_turns_cut"] > 0 for r in out)
    print(
        f"wrote {len(out)} conversations to {args.output} ({n_fb} kept the original message, {cut} with earlier "
        f"turns cut by the history budget, {sum(dropped.values())} record(s) dropped)",
        file=sys.stderr,
    )
    return 0


def _report_drops(dropped) -> None:
    for reason, places in sorted(dropped.locations.items()):
        print(
            f"bpo optimize: dropped {dropped[reason]} record(s) of --input as {reason}: {', '.join(places)}"
            + (" ..." if dropped[reason] > len(places) else ""),
            file=sys.stderr,
        )


def _usage(args: argparse.Namespace) -> int:
    from bpo.llm.usage import cli_usage

    return cli_usage(args)


def _cache(args: argparse.Namespace) -> int:
    """``bpo cache export|import PARQUET [--cache PATH] [--config CONFIG]``.

    ``--config`` registers the keys its endpoints name (``api_key_env``, ``${VAR}`` headers) for
    redaction, so a key without a recognisable shape is masked in rows a cache holds from before
    redaction-at-write; its ``llm.cache`` is the default ``--cache``."""
    from bpo import redact
    from bpo.llm import LLMError
    from bpo.llm.cache import DEFAULT_CACHE_PATH, Cache

    cache_path = args.cache
    if args.config:
        from bpo.settings import ConfigError, load_config

        try:
            config = load_config(args.config)
        except (OSError, ConfigError) as exc:
            print(f"bpo cache: --config {args.config}: {exc}", file=sys.stderr)
            return 1
        redact.register_config(config)
        cache_path = cache_path or config["llm"]["cache"]
    path = Path(cache_path or DEFAULT_CACHE_PATH)
    if args.action == "export":
        if not path.exists():
            print(f"bpo cache: no cache at {path} (set --cache to llm.cache of your config)", file=sys.stderr)
            return 1
        with Cache(path) as cache:
            n = cache.export_parquet(args.parquet)
        print(f"exported {n} cached calls from {path} to {args.parquet}")
        return 0
    try:
        with Cache(path) as cache:
            added, present = cache.import_parquet(args.parquet)
    except LLMError as exc:
        print(f"bpo cache: {exc}", file=sys.stderr)
        return 1
    print(f"imported {added} calls into {path} ({present} already present)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bpo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    opt = sub.add_parser("optimize", help="rewrite prompts with a trained optimizer")
    opt.add_argument("--model", required=True, help="trained optimizer folder (or hub id)")
    opt.add_argument("prompts", nargs="*", help="prompts to optimize (text mode)")
    opt.add_argument(
        "--input",
        help="jsonl/json/parquet file of prompts (file mode), or of OpenAI-style "
        '{"messages": [...]} records (messages mode: the last user message is '
        "rewritten in the light of the earlier turns; --output FILE.jsonl)",
    )
    opt.add_argument("--output", help="parquet file to write (file mode)")
    opt.add_argument("--column", default="prompt", help="prompt column in --input")
    opt.add_argument("--context-column", default=None, help="context column in --input (kept verbatim)")
    from bpo.settings.generation import ENGINES

    d = _optimizer_defaults()
    opt.add_argument(
        "--engine",
        choices=ENGINES,
        default=d["engine"],
        help="generation engine: auto (lean where the model allows, else hf-generate), lean, hf-generate or vllm",
    )
    opt.add_argument("--temperature", type=float, default=d["temperature"])
    opt.add_argument("--top-p", type=float, default=d["top_p"])
    opt.add_argument(
        "--max-tokens",
        "--max-new-tokens",
        dest="max_new_tokens",
        type=int,
        default=d["max_tokens"],
        help="longest rewrite in tokens (config eval.optimizers.<name>.max_tokens)",
    )
    opt.add_argument("--batch-size", type=int, default=d["batch_size"])
    opt.add_argument("--seed", type=int, default=d["seed"])
    opt.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    from bpo.prompt_format import FORMATS

    opt.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="the optimizer's input format; default: the one the model folder records "
        "(bpo_prompt_format.json), else plain (e.g. bpo-release for THUDM/BPO)",
    )
    opt.add_argument(
        "--include-system",
        action="store_true",
        help="messages input: the system message is one of the earlier turns the optimizer sees",
    )
    opt.add_argument(
        "--max-history-tokens",
        type=int,
        default=None,
        help="messages input: history budget in tokens (default: bpo.history.HISTORY_TOKENS); "
        "the oldest earlier turns beyond it are left out, the newest that does not fit whole is clipped",
    )
    opt.set_defaults(func=_optimize)

    usage = sub.add_parser("usage", help="LLM calls, tokens and estimated cost per stage and model")
    usage.add_argument("--cache", default=".bpo-cache/llm.sqlite")
    usage.add_argument("--config", default="config/config.yaml", help="config with llm.prices")
    usage.set_defaults(func=_usage)

    cache = sub.add_parser("cache", help="share the LLM cache: export to / import from Parquet")
    cache.add_argument("action", choices=["export", "import"])
    cache.add_argument("parquet")
    cache.add_argument(
        "--cache", default=None, help="the SQLite cache (default: llm.cache of --config, else .bpo-cache/llm.sqlite)"
    )
    cache.add_argument(
        "--config",
        default=None,
        help="workflow config whose endpoints' keys are masked in what is "
        "written (for caches from before redaction-at-write)",
    )
    cache.set_defaults(func=_cache)

    from bpo.serve.cli import add_arguments, cli_serve  # light: imports argparse only

    serve = sub.add_parser("serve", help="OpenAI-compatible proxy that rewrites prompts with the optimizer")
    add_arguments(serve)
    serve.set_defaults(func=cli_serve)
    return parser


class CLIError(Exception):
    """A problem the user can fix, reported as one ``bpo: error:`` line."""


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; an error is one line on stderr (exit 1), its traceback only with --debug."""
    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (anywhere on the line)")
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is taken anywhere before a "--", so it also works after a subcommand
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    args = parser.parse_args([a for a in argv[:end] if a != "--debug"] + argv[end:])
    try:
        return args.func(args)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        if debug:
            raise
        from bpo.redact import redact

        detail = str(exc).strip().splitlines()
        what = "" if isinstance(exc, CLIError) else f"{type(exc).__name__}: "
        print(
            f"bpo: error: {what}{redact(detail[0] if detail else '')}"
            + ("" if len(detail) < 2 else " (more with --debug)"),
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
