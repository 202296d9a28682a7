"""``bpo serve``: the config file (``--config``, schema ``bpo/resources/serve.schema.yaml``) with flags over it.

``--workers N`` (N > 1) runs N server processes on one port under uvicorn's process supervisor
(the socket is bound once and shared; the kernel spreads connections over the processes; a
worker that dies is replaced). Each worker builds its own app from the settings the parent
checked, passed in an environment variable (names of key variables only, never a key); the
rewrite cache is one SQLite file in WAL mode that every process reads and writes; ``/metrics``
adds up every worker's values (prometheus_client's multiprocess mode, files in a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile

WORKER_SETTINGS_ENV = "BPO_SERVE_WORKER_SETTINGS"
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
    p.add_argument("--workers", type=int, help="server processes on the port (default 1)")
    p.add_argument("--cache", help="rewrite cache (SQLite file)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def overrides(args: argparse.Namespace) -> dict:
    """The flags given, as a config mapping."""
    out: dict = {}
    for flag, key in (
        ("host", "host"),
        ("port", "port"),
        ("workers", "workers"),
        ("api_keys_env", "api_keys_env"),
        ("cache", "cache"),
    ):
        if getattr(args, flag) is not None:
            out[key] = getattr(args, flag)
    for flag, key in (("upstream", "base_url"), ("upstream_key_env", "api_key_env")):
        if getattr(args, flag) is not None:
            out.setdefault("upstream", {})[key] = getattr(args, flag)
    for flag, key in (("optimizer", "optimizer"), ("rewriter", "kind"), ("rewriter_url", "remote_base_url")):
        if getattr(args, flag) is not None:
            out.setdefault("rewriter", {})[key] = getattr(args, flag)
    return out


def worker_app():
    """The app of one ``--workers`` process (uvicorn's app factory, called in the worker)."""
    from bpo.serve.app import create_app
    from bpo.settings.serve import load_serve_config

    spec = json.loads(os.environ[WORKER_SETTINGS_ENV])
    logging.basicConfig(level=spec["log_level"].upper(), format=_LOG_FORMAT)
    return create_app(load_serve_config(None, spec["settings"]))


def cli_serve(args: argparse.Namespace) -> int:
    import asyncio

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from bpo.serve.app import create_app
    from bpo.serve.cache import CacheError
    from bpo.serve.server import uvicorn_config
    from bpo.settings import ConfigError, SettingsError
    from bpo.settings.serve import load_serve_config

    logging.basicConfig(level=args.log_level.upper(), format=_LOG_FORMAT)
    try:
        settings = load_serve_config(args.config, overrides(args))
        app = create_app(settings)
        # Load the optimizer now: a bad folder is one clear line, not a traceback from the server.
        asyncio.run(app.state.serve.rewriter.start())
        if settings.workers > 1:  # checked: the workers build their own
            asyncio.run(app.state.serve.rewriter.close())
    except (ConfigError, SettingsError, ValueError, CacheError, OSError) as exc:
        print(f"bpo serve: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        os.environ[WORKER_SETTINGS_ENV] = json.dumps({"settings": settings.canonical(), "log_level": args.log_level})
        config = uvicorn_config(
            "bpo.serve.cli:worker_app",
            factory=True,
            workers=settings.workers,
            host=settings.host,
            port=settings.port,
            log_level=args.log_level,
        )
        # /metrics adds up every worker's values (bpo.serve.metrics); the files go with the server
        with tempfile.TemporaryDirectory(prefix="bpo-serve-metrics-") as metrics_dir:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        return 0
    server = uvicorn.Server(uvicorn_config(app, host=settings.host, port=settings.port, log_level=args.log_level))
    server.run()
    return 0 if server.started else 1
