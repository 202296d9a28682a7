"""``bpo serve``: the config file (``--config``, schema ``bpo/resources/serve.schema.yaml``) with flags over it."""

from __future__ import annotations

import argparse
import logging
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="serve config YAML (keys and defaults: config/serve.yaml)")
    p.add_argument("--optimizer", help="optimizer folder or hub id (remote rewriter: the served model name)")
    p.add_argument("--rewriter", choices=["local", "remote", "identity"], help="where rewriting runs")
    p.add_argument("--rewriter-url", help="remote rewriter: base URL of the server serving the optimizer")
    p.add_argument("--upstream", help="base URL of the OpenAI-compatible API to forward to")
    p.add_argument("--upstream-key-env", help="environment variable holding the upstream API key")
    p.add_argument("--api-keys-env", help="environment variable holding the clients' keys (comma-separated)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--cache", help="rewrite cache (SQLite file)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def overrides(args: argparse.Namespace) -> dict:
    """The flags given, as a config mapping."""
    out: dict = {}
    for flag, key in (("host", "host"), ("port", "port"), ("api_keys_env", "api_keys_env"), ("cache", "cache")):
        if getattr(args, flag) is not None:
            out[key] = getattr(args, flag)
    for flag, key in (("upstream", "base_url"), ("upstream_key_env", "api_key_env")):
        if getattr(args, flag) is not None:
            out.setdefault("upstream", {})[key] = getattr(args, flag)
    for flag, key in (("optimizer", "optimizer"), ("rewriter", "kind"), ("rewriter_url", "remote_base_url")):
        if getattr(args, flag) is not None:
            out.setdefault("rewriter", {})[key] = getattr(args, flag)
    return out


def cli_serve(args: argparse.Namespace) -> int:
    import asyncio

    import uvicorn

    from bpo.serve.app import create_app
    from bpo.serve.cache import CacheError
    from bpo.serve.server import uvicorn_config
    from bpo.settings import ConfigError, SettingsError
    from bpo.settings.serve import load_serve_config

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_serve_config(args.config, overrides(args))
        app = create_app(settings)
        # Load the optimizer now: a bad folder is one clear line, not a traceback from the server.
        asyncio.run(app.state.serve.rewriter.start())
    except (ConfigError, SettingsError, ValueError, CacheError, OSError) as exc:
        print(f"bpo serve: {exc}", file=sys.stderr)
        return 2
    server = uvicorn.Server(uvicorn_config(app, host=settings.host, port=settings.port, log_level=args.log_level))
    server.run()
    return 0 if server.started else 1
