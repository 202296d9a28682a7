"""``backend: local``: a local Hugging Face model behind the LLM layer.

Like the stand-in, it plugs in as an `httpx2` transport under the real `AsyncOpenAI` client, so
a local call goes through the same client code as a paid one (caching, statuses, usage,
retries, the in-flight claims). The transport parses the chat-completions body, hands it to
the model's batching worker and answers with an OpenAI-shaped reply.

Batching: one worker thread per loaded model and dtype (a :class:`bpo.generation.LocalModel`
is not thread-safe) takes the requests queued within ``batch_wait_s`` of the first one, up to
``max_batch_size``, and generates each group with the same engine and decoding in ONE
:func:`bpo.generation.generate_chat` call.

Cache label: rows are stored under the source ``local:<16 hex>``, a hash of the weights'
fingerprint (every model file's content, or the hub commit), the dtype and the engine asked
for. Answers from other weights or settings never mix, and neither ``replay`` (which reads
``openai`` rows) nor a remote endpoint ever serves them.

Request fields: ``temperature`` (0 = greedy; absent = 1.0, as OpenAI), ``top_p``,
``max_tokens`` (absent: the endpoint's ``default_max_tokens``), ``seed`` (absent: 0), ``stop``
(the reply is cut before the first stop string; generation itself runs to EOS or the limit),
``n`` (1 only). Any other field is a 400 error naming it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

log = logging.getLogger("bpo.llm.local")

LOCAL_BASE_URL = "http://bpo-local.invalid/v1"
LOCAL_PREFIX = "local:"

# Files of a model folder that decide what it generates (weights, config, tokenizer, template, code).
_MODEL_SUFFIXES = {".json", ".safetensors", ".bin", ".pt", ".model", ".txt", ".tiktoken", ".gguf", ".py", ".jinja"}
_BODY_FIELDS = {"model", "messages", "temperature", "top_p", "max_tokens", "n", "seed", "stop"}

_FINGERPRINTS: dict[tuple, str] = {}


class LocalRequestError(ValueError):
    """A request this backend cannot answer as asked (a 400: retrying cannot help)."""


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_fingerprint(model: str) -> str:
    """What identifies ``model``'s outputs: for a folder, sha256 over its model files' names and
    contents (memoised per process by size and mtime); for a hub id, ``hub:<id>@<commit>``, the
    commit of its ``config.json`` in the hub cache (fetched if needed; loading needs it anyway)."""
    folder = Path(model)
    if not folder.is_dir():
        from huggingface_hub import hf_hub_download

        try:
            config = Path(hf_hub_download(model, "config.json"))  # .../snapshots/<commit>/config.json
        except Exception as exc:  # noqa: BLE001 - any hub failure: say which model
            raise FileNotFoundError(
                f"backend local: {model!r} is neither a folder nor a reachable hub id: {exc}"
            ) from exc
        return f"hub:{model}@{config.parent.name}"
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _MODEL_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"backend local: no model files (config, weights, tokenizer) in {folder}")
    stamp = (str(folder.resolve()), tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stamp not in _FINGERPRINTS:
        t = time.perf_counter()
        h = hashlib.sha256()
        for p in files:
            h.update(f"{p.name}\0{_hash_file(p)}\n".encode())
        _FINGERPRINTS[stamp] = h.hexdigest()
        log.info("backend local: fingerprint of %s (%d files) took %.1f s", folder, len(files), time.perf_counter() - t)
    return _FINGERPRINTS[stamp]


def local_source(model: str, dtype: str, engine: str) -> str:
    """The cache source label of answers from ``model`` generated with ``dtype`` and ``engine``."""
    ident = json.dumps({"weights": weights_fingerprint(model), "dtype": dtype, "engine": engine}, sort_keys=True)
    return LOCAL_PREFIX + hashlib.sha256(ident.encode()).hexdigest()[:16]


def is_local_source(source: str) -> bool:
    return source.startswith(LOCAL_PREFIX) and len(source) == len(LOCAL_PREFIX) + 16


# ---- requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Decoding:
    """The decoding settings of a request; requests with equal ones share a generate call."""

    greedy: bool
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int


@dataclass
class _Job:
    messages: list[dict[str, str]]
    engine: str
    decoding: Decoding
    stop: tuple[str, ...]
    future: concurrent.futures.Future


def _number(body: Mapping, name: str, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LocalRequestError(f"field {name} must be a number, got {value!r}")
    return float(value)


def parse_body(body: Any, default_max_tokens: int) -> tuple[list[dict[str, str]], Decoding, tuple[str, ...]]:
    """(messages, decoding, stop strings) of a chat-completions body; LocalRequestError names
    the field it cannot honour."""
    if not isinstance(body, dict):
        raise LocalRequestError("the body must be a JSON object")
    unknown = sorted(set(body) - _BODY_FIELDS)
    if unknown:
        raise LocalRequestError(
            f"backend local does not support the request field(s) {unknown} (supported: {sorted(_BODY_FIELDS)})"
        )
    if int(body.get("n") or 1) != 1:
        raise LocalRequestError(f"field n={body['n']}: backend local generates one choice per request (n must be 1)")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise LocalRequestError("field messages must be a non-empty list")
    messages = []
    for i, m in enumerate(raw):
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):  # content parts: only text can go to a text model
            if any(not isinstance(p, dict) or p.get("type") != "text" for p in content):
                raise LocalRequestError(f"field messages[{i}].content: only text parts are supported")
            content = "".join(p.get("text", "") for p in content)
        if not isinstance(content, str) or not isinstance(m.get("role"), str):
            raise LocalRequestError(f"field messages[{i}] must have a string role and content")
        messages.append({"role": m["role"], "content": content})
    temperature = _number(body, "temperature", 1.0)
    top_p = _number(body, "top_p", 1.0)
    if temperature < 0 or not 0 < top_p <= 1:
        raise LocalRequestError(f"fields temperature ({temperature}) must be >= 0 and top_p ({top_p}) in (0, 1]")
    max_tokens = body.get("max_tokens")
    max_tokens = default_max_tokens if max_tokens is None else max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise LocalRequestError(f"field max_tokens must be an integer >= 1, got {max_tokens!r}")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise LocalRequestError(f"field seed must be an integer, got {seed!r}")
    stop = body.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if not all(isinstance(s, str) and s for s in stops):
        raise LocalRequestError(f"field stop must be a non-empty string or a list of them, got {stop!r}")
    greedy = temperature == 0
    decoding = Decoding(
        greedy=greedy,
        temperature=1.0 if greedy else temperature,
        top_p=1.0 if greedy else top_p,
        max_new_tokens=max_tokens,
        seed=seed or 0,
    )
    return messages, decoding, stops


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> str | None:
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[: min(cuts)] if cuts else None


# ---- the batching worker ----------------------------------------------------------------


class LocalWorker:
    """One thread that owns one loaded model and generates the queued requests in batches.

    ``on_generate`` (tests, profiling) is called after each ``generate_chat`` call with the
    number of conversations it generated.
    """

    def __init__(self, model: str, dtype: str):
        self.model, self.dtype = model, dtype
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # each client sets these from its endpoint's limits before it sends
        self.max_batch_size = 1
        self.batch_wait_s = 0.0
        self.generate_calls = 0
        self.generated = 0
        self.engines: set[str] = set()
        self.on_generate: Callable[[int], None] | None = None
        self._loaded: Any = None

    def submit(self, messages, engine: str, decoding: Decoding, stops: tuple[str, ...]) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=f"bpo-local:{self.model}", daemon=True)
                self._thread.start()
        self._queue.put(_Job(messages, engine, decoding, stops, fut))
        return fut

    def _take(self) -> list[_Job]:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.batch_wait_s
        while len(batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        # a caller that gave up (cancelled run) is not generated for
        return [j for j in batch if j.future.set_running_or_notify_cancel()]

    def _loop(self) -> None:
        while True:
            groups: dict[tuple[str, Decoding], list[_Job]] = {}
            for job in self._take():
                groups.setdefault((job.engine, job.decoding), []).append(job)
            for (engine, decoding), jobs in groups.items():
                try:
                    self._run(engine, decoding, jobs)
                except Exception as exc:  # noqa: BLE001 - one bad request must not fail the batch
                    if len(jobs) == 1:
                        jobs[0].future.set_exception(exc)
                    else:
                        log.warning(
                            "backend local: a batch of %d failed (%s: %s); generating them one by one",
                            len(jobs),
                            type(exc).__name__,
                            exc,
                        )
                        for job in jobs:
                            try:
                                self._run(engine, decoding, [job])
                            except Exception as one:  # noqa: BLE001
                                job.future.set_exception(one)

    def _model(self):
        from bpo.generation import load_model

        if self._loaded is None:
            self._loaded = load_model(self.model, dtype=self.dtype)
        return self._loaded

    def _run(self, engine: str, decoding: Decoding, jobs: list[_Job]) -> None:
        from bpo.generation import GenerationSettings, generate_chat

        model = self._model()
        settings = GenerationSettings(
            engine=engine,
            temperature=decoding.temperature,
            top_p=decoding.top_p,
            max_new_tokens=decoding.max_new_tokens,
            batch_size=len(jobs),
            seed=decoding.seed,
            greedy=decoding.greedy,
        )
        t = time.perf_counter()
        out = generate_chat(model, [j.messages for j in jobs], settings)
        self.generate_calls += 1
        self.generated += len(jobs)
        ran = str(out.engine)
        if ran not in self.engines:
            self.engines.add(ran)
            log.info(
                "backend local: model %s (dtype %s, device %s) generates with engine %s (requested %s)",
                self.model,
                self.dtype,
                model.device,
                ran,
                out.engine.requested,
            )
        log.debug("backend local: %d conversations in one batch, %.2f s", len(jobs), time.perf_counter() - t)
        if self.on_generate is not None:
            self.on_generate(len(jobs))
        for job, g in zip(jobs, out.outputs):
            text, finish, completion_tokens = g.text, ("length" if g.hit_limit else "stop"), g.completion_tokens
            cut = _cut_at_stop(text, job.stop) if job.stop else None
            if cut is not None:
                # the tokens of what is returned (the stop string and what followed are dropped)
                text, finish = cut, "stop"
                completion_tokens = len(model.tokenizer(cut, add_special_tokens=False)["input_ids"])
            job.future.set_result(
                {
                    "text": text,
                    "finish_reason": finish,
                    "prompt_tokens": g.prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "engine": ran,
                }
            )


_WORKERS: dict[tuple[str, str], LocalWorker] = {}
_WORKERS_LOCK = threading.Lock()


def local_worker(model: str, dtype: str) -> LocalWorker:
    """The process's one worker for ``model`` loaded with ``dtype`` (as load_model caches it;
    requests for different engines share it and are generated in separate calls)."""
    key = (model, dtype)
    with _WORKERS_LOCK:
        if key not in _WORKERS:
            _WORKERS[key] = LocalWorker(model, dtype)
        return _WORKERS[key]


# ---- the transport ----------------------------------------------------------------------


def _error(code: int, message: str) -> httpx2.Response:
    return httpx2.Response(code, json={"error": {"message": message, "type": "invalid_request_error"}})


class LocalTransport(httpx2.AsyncBaseTransport):
    """Answers ``POST .../chat/completions`` with a local model through its batching worker.
    The client's ``timeout_s`` does not apply: a queued request waits for its batch."""

    def __init__(self, worker: LocalWorker, engine: str, source: str, default_max_tokens: int):
        self.worker = worker
        self.engine = engine
        self.source = source
        self.default_max_tokens = default_max_tokens
        self.engines: set[str] = set()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method != "POST" or not request.url.path.rstrip("/").endswith("/chat/completions"):
            return _error(404, f"backend local serves only chat completions, not {request.url.path}")
        try:
            body = json.loads(await request.aread())
            messages, decoding, stops = parse_body(body, self.default_max_tokens)
        except ValueError as exc:  # LocalRequestError, or a body that is not JSON
            return _error(400, f"backend local: {exc}")
        try:
            out = await asyncio.wrap_future(self.worker.submit(messages, self.engine, decoding, stops))
        except Exception as exc:  # noqa: BLE001 - a generation failure is this request's error
            return _error(
                400, f"backend local: generation failed with {self.worker.model}: {type(exc).__name__}: {exc}"
            )
        self.engines.add(out["engine"])
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
        pt, ct = out["prompt_tokens"], out["completion_tokens"]
        return httpx2.Response(
            200,
            json={
                "id": f"chatcmpl-local-{key}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.worker.model,
                "system_fingerprint": f"{self.source} {out['engine']}",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": out["finish_reason"],
                        "logprobs": None,
                        "message": {"role": "assistant", "content": out["text"], "refusal": None},
                    }
                ],
                "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
            },
        )
