"""`bpo` command line: the library's entry points outside Snakemake."""

from __future__ import annotations

import argparse
import sys


def _optimize(args: argparse.Namespace) -> int:
    from bpo.inference import cli_optimize

    return cli_optimize(args)


def _usage(args: argparse.Namespace) -> int:
    from bpo.llm.usage import cli_usage

    return cli_usage(args)


def _cache(args: argparse.Namespace) -> int:
    from bpo.llm.cache import cli_cache

    return cli_cache(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bpo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    opt = sub.add_parser("optimize", help="rewrite prompts with a trained optimizer")
    opt.add_argument("--model", required=True, help="trained optimizer folder (or hub id)")
    opt.add_argument("prompts", nargs="*", help="prompts to optimize (text mode)")
    opt.add_argument("--input", help="jsonl/json/parquet file of prompts (file mode)")
    opt.add_argument("--output", help="parquet file to write (file mode)")
    opt.add_argument("--column", default="prompt", help="prompt column in --input")
    opt.add_argument("--context-column", default=None, help="context column in --input (kept verbatim)")
    opt.add_argument("--temperature", type=float, default=0.6)
    opt.add_argument("--top-p", type=float, default=0.9)
    opt.add_argument("--max-new-tokens", type=int, default=256)
    opt.add_argument("--batch-size", type=int, default=32)
    opt.add_argument("--seed", type=int, default=42)
    opt.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    opt.set_defaults(func=_optimize)

    usage = sub.add_parser("usage", help="LLM calls, tokens and estimated cost per stage and model")
    usage.add_argument("--cache", default=".bpo-cache/llm.sqlite")
    usage.add_argument("--config", default="config/config.yaml", help="config with llm.prices")
    usage.set_defaults(func=_usage)

    cache = sub.add_parser("cache", help="share the LLM cache: export to / import from Parquet")
    cache.add_argument("action", choices=["export", "import"])
    cache.add_argument("parquet")
    cache.add_argument("--cache", default=".bpo-cache/llm.sqlite")
    cache.set_defaults(func=_cache)

    from bpo.serve.cli import add_arguments, cli_serve  # light: imports argparse only

    serve = sub.add_parser("serve", help="OpenAI-compatible proxy that rewrites prompts with the optimizer")
    add_arguments(serve)
    serve.set_defaults(func=cli_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
