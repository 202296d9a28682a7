"""``bpo serve``: an OpenAI-compatible proxy that rewrites the last user message with the prompt
optimizer before forwarding the request to an upstream OpenAI-compatible API.

Public API::

    from bpo.serve.app import create_app, routes          # the ASGI app (Starlette)
    from bpo.serve.server import ServerThread             # run it on a loopback port (tests, benchmarks)
    from bpo.serve.rewriter import Rewriter, Rewrite      # pluggable rewriters (local, remote, identity)
    from bpo.settings.serve import ServeSettings, load_serve_config

Submodules are imported where used: ``bpo serve --help`` does not load torch.
"""
