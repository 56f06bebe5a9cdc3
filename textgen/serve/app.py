"""The HTTP API: OpenAI-compatible completions, textgen's own jobs, health and metrics.

Starlette, served by uvicorn: we need routing and streaming responses and nothing more, and both
are small. Every request body becomes the same request dataclass the command line builds
(`SampleRequest`, `CompleteRequest`, ...), so a value is checked by the same code whichever door it
came through; a `ConfigError` becomes a 400 with OpenAI's error shape, naming the JSON field. A
request can only name a model the server was started with; nothing it carries is written to disk.

A token is one character for a character model and one SentencePiece piece for a subword model;
`max_tokens` is a length in characters (as `--length` is) and usage counts tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import math
import re
import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from textgen.api import TextClassifier, TextGenerator, load
from textgen.config import flag_of
from textgen.errors import TextgenError
from textgen.generate.sampling import encode_text, label_ids
from textgen.lab.inspection import Unit, check_unit, gate_width, trace_text
from textgen.lab.views import trace_json
from textgen.requests import (ClassifyRequest, CompleteRequest, EvalRequest, InspectRequest, SampleRequest,
                              ServeRequest)
from textgen.serve.engine import Busy, Engine, Event, Job, Token
from textgen.serve.monitor import Monitor
from textgen.serve.playground import PLAYGROUND_CSP, playground_page

BODY_MIN = 1 << 20  # bytes a request body may hold (more when --max-prompt allows longer prompts)
MAX_LOGPROBS = 20  # alternatives per token at most
MAX_TEXTS = 256  # texts one /v1/classify request may label
MAX_INSPECT = 2000  # characters /v1/inspect traces: every unit's value per character comes back
# JSON fields of /v1/completions and the SampleRequest field each sets
COMPLETION_FIELDS = {"max_tokens": "length", "n": "num_samples", "temperature": "temperature", "top_p": "top_p",
                     "top_k": "top_k", "min_p": "min_p", "typical_p": "typical_p",
                     "repetition_penalty": "repetition_penalty", "repeat_guard": "repeat_guard", "stop": "stop",
                     "seed": "seed", "label": "label"}
DEFAULT_MAX_TOKENS = 16  # OpenAI's default

class ApiError(Exception):
    """A request the server refuses: the status and OpenAI's error fields."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, self.status, headers=self.headers)


def _field_names() -> dict[str, str]:
    """Command-line flag -> JSON field, for the messages of the shared checks."""
    names = {}
    for request in (SampleRequest, CompleteRequest, ClassifyRequest, EvalRequest, InspectRequest):
        for spec in dataclasses.fields(request):
            names[flag_of(request, spec.name)] = spec.name
    names.update({flag_of(SampleRequest, field): key for key, field in COMPLETION_FIELDS.items()})
    return names


FIELD_NAMES = _field_names()
FLAG = re.compile(r"--[a-z][a-z0-9-]*")


def invalid(error: TextgenError) -> ApiError:
    """A 400 from a check's message, its command-line flags written as the JSON fields they are here."""
    flags = FLAG.findall(str(error))
    message = FLAG.sub(lambda match: FIELD_NAMES.get(match.group(), match.group()), str(error))
    return ApiError(400, message, FIELD_NAMES.get(flags[0]) if flags else None)


class Server:
    """The models, their batching engines and the counters behind one app."""

    def __init__(self, request: ServeRequest, models: dict[str, TextGenerator | TextClassifier]):
        self.request, self.models, self.monitor = request, models, Monitor()
        self.body_limit = max(BODY_MIN, 8 * request.max_prompt)
        self.engines = {name: Engine(model.model, model.tokenizer, model.device, request.max_streams,
                                     request.max_queue, self._step_reporter(name))
                        for name, model in models.items() if isinstance(model, TextGenerator)}

    def _step_reporter(self, name: str):
        return lambda streams, queued, characters: self.monitor.step(name, streams, queued, characters)

    def kinds(self) -> dict[str, str]:
        return {name: "language_model" if isinstance(model, TextGenerator) else "classifier"
                for name, model in self.models.items()}

    # --- what every route shares ---

    def guarded(self, route: str, handler):
        """`handler` behind the API key, with errors as OpenAI's shape and each request counted."""
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await self.respond(request, handler)
            except Exception:  # a bug: counted as the 500 it becomes
                self.monitor.request(route, 500, time.perf_counter() - started)
                raise
            self.monitor.request(route, response.status_code, time.perf_counter() - started)
            return response
        return endpoint

    async def respond(self, request: Request, handler) -> Response:
        try:
            self.check_key(request)
            return await handler(request)
        except ApiError as error:
            return error.response()
        except Busy as error:
            return ApiError(429, str(error), code="rate_limit_exceeded", kind="rate_limit_error",
                            headers={"Retry-After": "1"}).response()
        except TextgenError as error:
            return invalid(error).response()

    def check_key(self, request: Request) -> None:
        # the page itself holds only model names, and a browser opening it cannot send a header: it asks
        # for the key when the API answers 401
        if self.request.api_key is None or (request.method == "GET" and request.url.path == "/"):
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.request.api_key}".encode()):
            raise ApiError(401, "missing or wrong API key; send the header Authorization: Bearer KEY",
                           code="invalid_api_key")

    async def body(self, request: Request) -> dict[str, Any]:
        """The JSON object the request carries, read no further than the body limit."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.body_limit:
            raise ApiError(413, f"the body has {int(declared):,} bytes; the limit is {self.body_limit:,}")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > self.body_limit:
                raise ApiError(413, f"the body is over the limit of {self.body_limit:,} bytes")
        try:
            body = json.loads(bytes(data))
        except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
            raise ApiError(400, f"the body is not JSON in UTF-8 ({str(error)[:100]}); send a JSON object") from None
        if not isinstance(body, dict):
            raise ApiError(400, f"the body must be a JSON object, got {type(body).__name__}")
        return body

    def model(self, body: dict[str, Any], kind: type, required: bool = False) -> str:
        """The served model of class `kind` that `body` names (default: the first such)."""
        names = [name for name, model in self.models.items() if isinstance(model, kind)]
        what = "language model" if kind is TextGenerator else "classifier"
        name = body.get("model")
        if name is None and not required and names:
            return names[0]
        if not isinstance(name, str):
            raise ApiError(400, f"model must name a served {what}: one of {', '.join(names) or '(none)'}", "model")
        if name not in self.models:
            raise ApiError(404, f"model {name[:100]!r} is not served here; choose one of "
                                f"{', '.join(self.models)}", "model", "model_not_found")
        if name not in names:
            raise ApiError(400, f"model {name!r} is not a {what}; this route needs one of "
                                f"{', '.join(names) or '(none served)'}", "model")
        return name

    def text(self, body: dict[str, Any], key: str, limit: int | None = None) -> str:
        value = body.get(key)
        if isinstance(value, list) and len(value) == 1:  # OpenAI clients may send a one-prompt list
            value = value[0]
        if not isinstance(value, str):
            raise ApiError(400, f"{key} must be a text, got {type(value).__name__}", key)
        if not value:
            raise ApiError(400, f"{key} is empty; give at least one character", key)
        limit = limit or self.request.max_prompt
        if len(value) > limit:
            raise ApiError(400, f"{key} has {len(value):,} characters; this server takes at most {limit:,}", key)
        return value

    # --- OpenAI's completions ---

    def sample_request(self, body: dict[str, Any], name: str, prompt: str) -> SampleRequest:
        settings = {field: body[key] for key, field in COMPLETION_FIELDS.items() if body.get(key) is not None}
        settings.setdefault("length", DEFAULT_MAX_TOKENS)
        if "label" in settings and isinstance(settings["label"], str):
            settings["label"] = (settings["label"],)
        sample = SampleRequest(model=name, prompt=prompt, **settings)
        most_n = min(self.request.max_n, self.request.max_streams)  # a request never waits for more slots than exist
        for key, value, limit in (("max_tokens", sample.length, self.request.max_tokens),
                                  ("n", sample.num_samples, most_n)):
            if value > limit:
                raise ApiError(400, f"{key} {value:,} is above this server's limit of {limit:,}; ask for fewer", key)
        generator = self.models[name]
        label_ids(generator.model, sample.label, sample.num_samples, generator.device)  # an unknown label: 400 now
        return sample

    async def completions(self, request: Request) -> Response:
        body = await self.body(request)
        name = self.model(body, TextGenerator, required=True)
        prompt = self.text(body, "prompt")
        flags = {key: body.get(key, False) for key in ("stream", "echo")}
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise ApiError(400, f"{key} must be true or false, got {value!r}", key)
        # max_tokens 0 with echo asks for the prompt alone: OpenAI's way to score a text (with logprobs)
        prompt_only = type(body.get("max_tokens")) is int and body["max_tokens"] == 0
        if prompt_only and not flags["echo"]:
            raise ApiError(400, "max_tokens 0 asks for no text, which serves only with echo (to score the prompt); "
                                "ask for 1 or more", "max_tokens")
        sample = self.sample_request({**body, "max_tokens": 1} if prompt_only else body, name, prompt)
        logprobs = body.get("logprobs")
        if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int)
                                     or not 0 <= logprobs <= MAX_LOGPROBS):
            raise ApiError(400, f"logprobs must be a whole number from 0 to {MAX_LOGPROBS}, got {logprobs!r}",
                           "logprobs")
        # a stream's text goes out every --stream-interval seconds; a whole answer's when it is done
        interval = self.request.stream_interval if flags["stream"] else math.inf
        job = Job(prompt, sample, logprobs or 0, asyncio.get_running_loop(), interval)
        echoed = []  # the prompt's own tokens, scored, where echo and logprobs ask for them
        if flags["echo"] and logprobs is not None:
            echoed = await run_in_threadpool(self.engines[name].prompt_tokens, prompt, logprobs)
        if prompt_only:  # nothing to generate: the engine never sees it
            job.prompt_tokens = len(encode_text(self.models[name].tokenizer, prompt))
            job.put([Event(index, "", [], "length") for index in range(sample.num_samples)])
        else:
            self.engines[name].submit(job)
        reply = _Reply(name, job, prompt if flags["echo"] else "", logprobs is not None, echoed)
        if flags["stream"]:
            return StreamingResponse(reply.stream(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            return JSONResponse(await reply.whole())
        finally:
            job.cancel()

    async def list_models(self, request: Request) -> Response:
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "textgen", "kind": kind}
                for name, kind in self.kinds().items()]
        return JSONResponse({"object": "list", "data": data})

    # --- textgen's own jobs ---

    async def classify(self, request: Request) -> Response:
        body = await self.body(request)
        name = self.model(body, TextClassifier)
        texts = body.get("texts")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or len(texts) > MAX_TEXTS:
            raise ApiError(400, f"texts must be a list of 1 to {MAX_TEXTS} texts", "texts")
        for text in texts:
            self.text({"texts": text}, "texts")
        ClassifyRequest(texts=tuple(texts), model=name)
        predictions = await run_in_threadpool(self.models[name].classify, texts)
        return JSONResponse({"model": name, "data": [
            {"index": index, "label": p.label, "probability": p.probability, "probabilities": p.probabilities}
            for index, p in enumerate(predictions)]})

    async def complete(self, request: Request) -> Response:
        body = await self.body(request)
        name = self.model(body, TextGenerator)
        prefix = self.text(body, "prefix")
        settings = {key: body[key] for key in ("top", "until", "label") if body.get(key) is not None}
        complete = CompleteRequest(prefix=prefix, model=name, **settings)
        completions = await run_in_threadpool(self.models[name].complete, prefix, complete.top, complete.until,
                                              complete.label)
        return JSONResponse({"model": name, "completions": [
            {"text": c.text, "probability": c.probability, "per_char": c.per_char} for c in completions]})

    async def score(self, request: Request) -> Response:
        body = await self.body(request)
        name = self.model(body, TextGenerator)
        text = self.text(body, "text")
        EvalRequest(model=name, text=text)
        return JSONResponse({"model": name, **await run_in_threadpool(self.models[name].score, text)})

    async def inspect(self, request: Request) -> Response:
        body = await self.body(request)
        name = body.get("model")
        kind = TextClassifier if isinstance(self.models.get(name), TextClassifier) else TextGenerator
        name = self.model(body, kind)
        text = self.text(body, "text", MAX_INSPECT)
        settings = {key: body[key] for key in ("layer", "gate") if body.get(key) is not None}
        inspect = InspectRequest(model=name, text=text, **settings)
        loaded = self.models[name]
        chosen = check_unit(loaded.model, inspect.layer, inspect.gate)
        width = gate_width(loaded.model.rnn, chosen.gate)
        trace = await run_in_threadpool(trace_text, loaded.model, loaded.tokenizer, text)
        units = [Unit(chosen.layer, chosen.gate, unit) for unit in range(width)]
        return JSONResponse({"model": name, "layer": chosen.layer, "gate": chosen.gate, **trace_json(trace, units)})

    # --- for people and machines watching ---

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "models": self.kinds()})

    async def metrics(self, request: Request) -> Response:
        return PlainTextResponse(self.monitor.text(), media_type="text/plain; version=0.0.4")

    async def playground(self, request: Request) -> Response:
        return HTMLResponse(playground_page(self.kinds()), headers={"Content-Security-Policy": PLAYGROUND_CSP})

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()


class _Reply:
    """One completion request's answer, whole or as server-sent events."""

    def __init__(self, model: str, job: Job, echo: str, logprobs: bool, echoed: list[Token]):
        self.model, self.job, self.echo, self.logprobs, self.echoed = model, job, echo, logprobs, echoed
        self.id, self.created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        # where each sample's next text begins (its tokens' text_offset): after the echo, or at 0 where
        # the echo's own tokens are listed
        self.offsets = [0 if echoed else len(echo)] * job.config.num_samples

    def choice(self, event: Event) -> dict[str, Any]:
        logprobs = None
        if self.logprobs:
            offsets, offset = [], self.offsets[event.index]
            for token in event.tokens:
                offsets.append(offset)
                offset += len(token.text)
            logprobs = {"tokens": [t.text for t in event.tokens], "token_logprobs": [t.logprob for t in event.tokens],
                        "top_logprobs": [t.top for t in event.tokens], "text_offset": offsets}
        self.offsets[event.index] += len(event.text)
        return {"text": event.text, "index": event.index, "logprobs": logprobs, "finish_reason": event.finish_reason}

    def usage(self, completion_tokens: int) -> dict[str, int]:
        return {"prompt_tokens": self.job.prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": self.job.prompt_tokens + completion_tokens}

    def envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": choices}

    async def events(self):
        """The job's events until every sample has finished, a batch at a time (the engine paces them)."""
        unfinished = self.job.config.num_samples
        while unfinished:
            batch = await self.job.next_events()
            for event in batch:
                if event.error is not None:
                    raise TextgenError(event.error)
                unfinished -= event.finish_reason is not None
            yield batch

    async def whole(self) -> dict[str, Any]:
        texts = [[self.echo] for _ in range(self.job.config.num_samples)]
        tokens: list[list] = [list(self.echoed) for _ in texts]
        finish, used = [None] * len(texts), 0
        try:
            async for batch in self.events():
                for event in batch:
                    texts[event.index].append(event.text)
                    tokens[event.index] += event.tokens
                    if event.finish_reason:
                        finish[event.index], used = event.finish_reason, used + event.completion_tokens
        except TextgenError as error:
            raise ApiError(500, str(error), kind="server_error") from None
        choices = [self.choice(Event(index, "".join(text), tokens[index], finish[index]))
                   for index, text in enumerate(texts)]
        return {**self.envelope(choices), "usage": self.usage(used)}

    async def stream(self):
        try:
            if self.echo:
                self.offsets = [0] * len(self.offsets)
                yield "".join(_sse(self.envelope([self.choice(Event(index, self.echo, self.echoed))]))
                              for index in range(len(self.offsets)))
            used = 0
            try:
                async for batch in self.events():
                    yield _sse(self.envelope([self.choice(event) for event in _merged(batch)]))
                    used += sum(event.completion_tokens for event in batch)
                yield _sse({**self.envelope([]), "usage": self.usage(used)})
            except TextgenError as error:
                yield _sse({"error": {"message": str(error), "type": "server_error", "param": None, "code": None}})
            yield "data: [DONE]\n\n"
        finally:  # the client left, or every sample finished: free the slots
            self.job.cancel()


def _merged(batch: list[Event]) -> list[Event]:
    """One event per sample for a batch of events: a client that falls behind gets fewer, longer chunks."""
    if len(batch) == 1:  # the usual case: nothing to merge
        return batch
    merged: dict[int, Event] = {}
    for event in batch:
        if event.index not in merged:
            merged[event.index] = Event(event.index, event.text, list(event.tokens), event.finish_reason,
                                        event.completion_tokens)
            continue
        into = merged[event.index]
        into.text += event.text
        into.tokens += event.tokens
        into.finish_reason, into.completion_tokens = event.finish_reason, into.completion_tokens + event.completion_tokens
    return sorted(merged.values(), key=lambda event: event.index)


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


# OpenAI routes that a client may try first, and what textgen serves in their place
_INSTEAD = {"/v1/chat/completions": "textgen's models continue text and have no chat format; send the text "
                                    "to continue to POST /v1/completions (the openai client's completions.create)"}


async def _not_found(request: Request, error: HTTPException) -> Response:
    instead = _INSTEAD.get(request.url.path) if error.status_code == 404 else None
    return ApiError(error.status_code, f"{request.method} {request.url.path}: {instead or error.detail}",
                    code="not_found" if error.status_code == 404 else None).response()


def load_models(request: ServeRequest) -> dict[str, TextGenerator | TextClassifier]:
    """Each model the request names, loaded once."""
    return {name: load(name, request.device) for name in dict.fromkeys(request.model)}


def create_app(request: ServeRequest, models: dict[str, TextGenerator | TextClassifier] | None = None) -> Starlette:
    """The server's ASGI app for `request`, with `models` (name -> loaded model; default: those the
    request names, loaded now). Its batching threads start with the first completion."""
    server = Server(request, models if models is not None else load_models(request))
    routes = [("/v1/completions", server.completions, "POST"), ("/v1/models", server.list_models, "GET"),
              ("/v1/classify", server.classify, "POST"), ("/v1/complete", server.complete, "POST"),
              ("/v1/score", server.score, "POST"), ("/v1/inspect", server.inspect, "POST"),
              ("/health", server.health, "GET"), ("/metrics", server.metrics, "GET"),
              ("/", server.playground, "GET")]
    middleware = [Middleware(CORSMiddleware, allow_origins=list(request.cors), allow_methods=["GET", "POST"],
                             allow_headers=["Authorization", "Content-Type"])] if request.cors else []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await run_in_threadpool(server.close)

    app = Starlette(routes=[Route(path, server.guarded(path, handler), methods=[method])
                            for path, handler, method in routes],
                    middleware=middleware, exception_handlers={HTTPException: _not_found}, lifespan=lifespan)
    app.state.server = server
    return app
