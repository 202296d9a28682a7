"""Rewriters: what turns a user prompt into the optimized prompt the upstream sees.

This is the serving package's ONE adapter to the optimizer's generation code
(``bpo.optimizer``): every other module of ``bpo.serve`` goes through :class:`Rewriter`.

- :class:`LocalRewriter` runs the optimizer in this process (one worker thread; a batch of
  prompts is one ``optimize_prompts`` call, batched and continuously batched there).
- :class:`RemoteRewriter` sends a batch as one ``/v1/completions`` request (a list of prompts in
  the optimizer's input format) to an OpenAI-compatible server that serves the optimizer, e.g.
  ``vllm serve results/demo/models/optimizer``; that engine then batches on its GPUs.
- :class:`IdentityRewriter` returns the prompt unchanged (a proxy that only audits and measures;
  the latency benchmark's mode).

Both model rewriters apply the same degenerate-output check, so a bad rewrite is replaced by the
original prompt with its reason, wherever the optimizer runs.

Multi-turn: ``rewrite_batch(prompts, histories)`` takes one history per prompt (the earlier turns
of the conversation as ``{role, content}`` dicts; None/``[]`` = single-turn, exactly the input of
before). The optimizer sees the history fitted to ``rewriter.max_history_tokens`` and rewrites
the last user message only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bpo.generation.model import model_folder_problem
from bpo.history import CHARS_PER_TOKEN, fit_history
from bpo.optimizer import degenerate_reason, optimize_prompts
from bpo.optimizer.fallback import EMPTY_INPUT
from bpo.prompt_format import PLAIN, TEMPLATE_VERSION, format_prompt
from bpo.settings.generation import GenerationSettings
from bpo.settings.serve import RewriterSettings

# Fallback reasons added by the server (the optimizer's own come from bpo.optimizer).
TIMEOUT = "timeout"
ERROR = "rewriter_error"


@dataclass(frozen=True)
class Rewrite:
    text: str  # the prompt to send: the rewrite, or the original when fallback_reason is set
    fallback_reason: str | None = None


class RewriterError(RuntimeError):
    """The rewriter could not answer a batch (every prompt of it falls back)."""


class Rewriter:
    """Base: ``rewrite_batch`` maps prompts to rewrites in order. ``identity`` names the optimizer
    and decoding, so the cache never serves one optimizer's rewrite for another's."""

    kind = "base"
    identity = ""
    batched = True  # False: answered inline, no queue, no cache

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def rewrite_batch(self, prompts: list[str], histories: list | None = None) -> list[Rewrite]:
        raise NotImplementedError


class IdentityRewriter(Rewriter):
    kind = "identity"
    identity = "identity"
    batched = False

    async def rewrite_batch(self, prompts: list[str], histories: list | None = None) -> list[Rewrite]:
        return [Rewrite(p) for p in prompts]


def _decoding(s: RewriterSettings) -> dict:
    return {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_new_tokens": s.max_new_tokens,
        "greedy": s.greedy,
        "seed": s.seed,
    }


def _fingerprint(model: str) -> str:
    """Which weights a folder holds (names, sizes, mtimes: cheap, and changes on retraining);
    a hub id stands for itself."""
    path = Path(model)
    if not path.is_dir():
        return model
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return f"{path.resolve()}@{h.hexdigest()[:16]}"


class LocalRewriter(Rewriter):
    kind = "local"

    def __init__(self, settings: RewriterSettings, batch_size: int):
        if not settings.optimizer:
            raise ValueError("rewriter.optimizer (--optimizer): the optimizer folder or hub id is needed")
        problem = model_folder_problem(settings.optimizer)  # the check bpo optimize --model makes
        if problem:
            raise ValueError(f"rewriter.optimizer (--optimizer): {problem}")
        self.settings = settings
        self.batch_size = batch_size
        self.identity = json.dumps(
            {
                "kind": "local",
                "model": _fingerprint(settings.optimizer),
                "template": TEMPLATE_VERSION,
                **_decoding(settings),
            },
            sort_keys=True,
        )
        # One thread: the model is not shared between concurrent generations; a batch uses it whole.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="bpo-rewrite")
        self._started = False

    def _generate(
        self, prompts: list[str], max_new_tokens: int | None = None, histories: list | None = None
    ) -> list[Rewrite]:
        s = self.settings
        kw = _decoding(s)
        if max_new_tokens is not None:
            kw["max_new_tokens"] = max_new_tokens
        generation = GenerationSettings(engine=s.engine, batch_size=self.batch_size, **kw)
        rewrites = optimize_prompts(
            s.optimizer, prompts, generation, histories=histories, max_history_tokens=s.max_history_tokens
        )
        return [Rewrite(r.text, r.fallback_reason) for r in rewrites.results]

    async def start(self) -> None:
        # Load the model before the first client waits for it (one token of one prompt).
        if not self._started:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._generate, ["warm up"], 1)
            self._started = True

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def rewrite_batch(self, prompts: list[str], histories: list | None = None) -> list[Rewrite]:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._generate, prompts, None, histories
        )


class RemoteRewriter(Rewriter):
    kind = "remote"

    def __init__(self, settings: RewriterSettings, environ=os.environ):
        if not settings.remote_base_url or not settings.optimizer:
            raise ValueError(
                "rewriter kind remote needs rewriter.remote_base_url and rewriter.optimizer (the served model name)"
            )
        self.settings = settings
        self.url = settings.remote_base_url.rstrip("/") + "/completions"
        self.identity = json.dumps(
            {
                "kind": "remote",
                "url": settings.remote_base_url,
                "model": settings.optimizer,
                "template": TEMPLATE_VERSION,
                **_decoding(settings),
            },
            sort_keys=True,
        )
        self._headers = {"content-type": "application/json"}
        if settings.remote_api_key_env:
            key = environ.get(settings.remote_api_key_env)
            if not key:
                raise ValueError(
                    f"rewriter.remote_api_key_env: environment variable {settings.remote_api_key_env} is not set"
                )
            self._headers["authorization"] = f"Bearer {key}"
        self._http = None

    async def start(self) -> None:
        import httpx2  # the openai SDK's HTTP client (pinned); one request per batch

        self._http = httpx2.AsyncClient(timeout=httpx2.Timeout(600.0, connect=10.0))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def _input(self, prompt: str, history) -> str:
        # no tokenizer here: the budget counts characters
        kept, _ = fit_history(history, None, CHARS_PER_TOKEN * self.settings.max_history_tokens)
        return format_prompt(prompt, PLAIN, history=kept)

    async def rewrite_batch(self, prompts: list[str], histories: list | None = None) -> list[Rewrite]:
        import httpx2 as httpx

        s = self.settings
        histories = histories or [None] * len(prompts)
        body = {
            "model": s.optimizer,
            "prompt": [self._input(p, h) for p, h in zip(prompts, histories)],
            "max_tokens": s.max_new_tokens,
            "n": 1,
            "seed": s.seed,
        }
        body.update({"temperature": 0.0} if s.greedy else {"temperature": s.temperature, "top_p": s.top_p})
        try:
            resp = await self._http.post(self.url, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise RewriterError(f"remote optimizer {self.url}: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise RewriterError(f"remote optimizer {self.url}: HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            choices = resp.json()["choices"]
            by_index = {int(c["index"]): c for c in choices}
            outs = [
                (by_index[i].get("text") or "", by_index[i].get("finish_reason") == "length")
                for i in range(len(prompts))
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise RewriterError(
                f"remote optimizer {self.url}: unexpected reply ({type(exc).__name__}: {exc})"
            ) from None
        results = []
        for prompt, history, (raw, hit_limit) in zip(prompts, histories, outs):
            reason = degenerate_reason(raw, hit_limit, prompt, history=history) if prompt.strip() else EMPTY_INPUT
            results.append(Rewrite(prompt if reason else raw.strip(), reason))
        return results


def make_rewriter(settings: RewriterSettings, *, batch_size: int, environ=os.environ) -> Rewriter:
    if settings.kind == "identity":
        return IdentityRewriter()
    if settings.kind == "local":
        return LocalRewriter(settings, batch_size)
    if settings.kind == "remote":
        return RemoteRewriter(settings, environ)
    raise ValueError(f"rewriter.kind must be local, remote or identity, got {settings.kind!r}")
