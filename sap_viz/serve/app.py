"""The OpenAI-compatible HTTP app: ``GET /v1/models``, ``POST /v1/chat/completions`` (plain and streamed),
``POST /v1/moderations`` (the prompt verdict as OpenAI's moderation answer), ``GET /health``.

FastAPI only, no Gradio: the server is for clients that already speak OpenAI's API (the official SDKs,
LangChain, curl). Every error leaves as OpenAI's error object with its status; a traceback stays in
the server log. With an API key every ``/v1`` path needs ``Authorization: Bearer <key>``; ``/health``
stays open for load balancers and tells nothing but the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass, replace

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sap_viz import __version__, strict_json
from sap_viz.analysis.account import fired_words
from sap_viz.errors import UserError
from sap_viz.method.request_settings import DEFAULT_MODE
from sap_viz.serve import API_KEY_ENV
from sap_viz.serve.engine import ChatEngine, Completion
from sap_viz.serve.errors import ApiError, bad_request
from sap_viz.serve.guard import KeylessGuard
from sap_viz.serve.moderation import parse_moderation_request
from sap_viz.serve.openapi import chat_openapi, moderation_openapi
from sap_viz.serve.queue import RequestQueue, Ticket
from sap_viz.serve.schemas import ChatRequest, parse_chat_request

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5
BODY_TIMEOUT_S = 30.0  # a client that has not sent its whole body by then is answered 408 and its slot is freed


@dataclass(frozen=True)
class ServeConfig:
    """How the server answers: its model id, its key, its queue, and the defaults a request may change."""

    model_name: str
    polytope_name: str
    api_key: str | None = None
    max_waiting: int = 8
    default_mode: str = DEFAULT_MODE
    default_max_tokens: int | None = None  # None: the request settings' default, within the limit SAP_VIZ_MAX_NEW_TOKENS
    body_timeout_s: float = BODY_TIMEOUT_S


def api_error_for(exc: BaseException) -> ApiError:
    """The server's one error conversion: its own ApiError as it is, a UserError as a 400 naming its field
    (``param``), anything else a logged 500 "internal error" that never blames the caller."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UserError):
        return bad_request(str(exc), exc.param or "sap")
    log.error("internal error while answering a request", exc_info=exc)
    return ApiError(500, f"internal error ({type(exc).__name__}); the server log has the details")


def blocked_error(done: Completion) -> dict:
    """The ``error`` object of a stream the answer check ended (NeMo Guardrails' code for a blocked stream)."""
    where = fired_words(done.result.answer_check or {})
    return {"message": f"the answer check read the answer as harmful {where}; the answer was stopped there and replaced by "
                       "the refusal", "type": "content_filter", "param": None, "code": "content_blocked"}


def _error_response(exc: ApiError) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 429 else {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _sse(data: dict | str) -> str:
    """One server-sent event; like JSONResponse, never NaN or Infinity (not JSON): a bug there fails here, not in the client."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, allow_nan=False)}\n\n"


class JsonEndpoint:
    """A POST endpoint on the one model: its body read under the cap and the deadline, its work admitted by the queue."""

    def __init__(self, engine: ChatEngine, config: ServeConfig, queue: RequestQueue):
        self.engine, self.config, self.queue = engine, config, queue
        self.max_body = max(1 << 20, 4 * engine.limits.max_text_chars + (64 << 10))

    async def body(self, request: Request) -> object:
        """The JSON body, read as it arrives: refused (413) as soon as it passes the cap, whether or not it declared a
        Content-Length (a chunked body has none), and (408) when it has not all come within ``body_timeout_s``."""
        too_big = ApiError(413, f"the request body is larger than {self.max_body:,} bytes")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise too_big
        raw = bytearray()
        try:
            async with asyncio.timeout(self.config.body_timeout_s):
                async for chunk in request.stream():
                    raw += chunk
                    if len(raw) > self.max_body:
                        raise too_big
        except TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {self.config.body_timeout_s:g} seconds", None,
                           "timeout") from None
        try:
            return await asyncio.to_thread(strict_json.loads, bytes(raw))  # up to 1 MB of scanning: off the event loop
        except strict_json.JsonTextError as exc:
            raise bad_request(f"We could not parse the JSON body of your request: {exc}", None, "invalid_json") from None


class ModerationEndpoint(JsonEndpoint):
    """One moderations call: the inputs checked, admitted (429 when full) before any model work, scored on the model's thread."""

    async def __call__(self, request: Request) -> JSONResponse:
        req = parse_moderation_request(await self.body(request), self.config.model_name, self.engine.limits)
        ticket = self.queue.admit()
        future = self.queue.run(ticket, lambda: self.engine.moderate(req))
        try:
            results = await asyncio.wrap_future(future)
        except Exception as exc:  # noqa: BLE001 — converted once, by api_error_for
            raise api_error_for(exc) from None
        return JSONResponse({"id": f"modr-{uuid.uuid4().hex}", "model": self.config.model_name, "results": results})


class ChatEndpoint(JsonEndpoint):
    """One chat-completions call from JSON body to response, plain or streamed."""

    def __init__(self, engine: ChatEngine, config: ServeConfig, queue: RequestQueue):
        super().__init__(engine, config, queue)
        self.fingerprint = f"sap-viz-{__version__}-{engine.lm.fingerprint[:8]}"

    def _head(self, ident: str, created: int) -> dict:
        return {"id": ident, "created": created, "model": self.config.model_name, "system_fingerprint": self.fingerprint}

    def completion_body(self, done: Completion, ident: str, created: int) -> dict:
        message = {"role": "assistant", "content": done.text, "refusal": done.text if done.finish_reason == "content_filter" else None}
        return {**self._head(ident, created), "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": done.finish_reason}],
                "usage": done.usage, "sap": done.sap}

    def _chunk(self, ident: str, created: int, req: ChatRequest, delta: dict, finish: str | None = None) -> dict:
        out = {**self._head(ident, created), "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return {**out, "usage": None} if req.include_usage else out

    async def __call__(self, request: Request) -> JSONResponse | StreamingResponse:
        req = parse_chat_request(await self.body(request), self.config.model_name, self.engine.limits, self.config.default_mode,
                                 self.config.default_max_tokens)
        ticket = self.queue.admit()  # a full queue answers 429 at once, before any tokenizing
        try:
            lm, notices = await asyncio.to_thread(self.engine.prepare, req)  # tokenizes: off the event loop
        except BaseException:
            ticket.release()
            raise
        req = replace(req, notices=(*req.notices, *notices))
        ident, created, cancel = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), threading.Event()
        if req.stream:
            pieces, future = self._start_stream(req, lm, ticket, cancel)
            return StreamingResponse(self._stream(req, pieces, future, cancel, ident, created), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        future = self.queue.run(ticket, lambda: self.engine.complete(req, cancel, None, lm))
        watcher = asyncio.create_task(self._cancel_on_disconnect(request, cancel))
        try:
            done = await asyncio.wrap_future(future)
        except Exception as exc:  # noqa: BLE001 — converted once, by api_error_for
            raise api_error_for(exc) from None
        finally:
            watcher.cancel()
        return JSONResponse(self.completion_body(done, ident, created))

    @staticmethod
    async def _cancel_on_disconnect(request: Request, cancel: threading.Event) -> None:
        """A client that went away stops its generation at the next token."""
        while not cancel.is_set():
            if await request.is_disconnected():
                cancel.set()
                return
            await asyncio.sleep(0.25)

    def _start_stream(self, req: ChatRequest, lm, ticket: Ticket, cancel: threading.Event) -> tuple[asyncio.Queue, Future]:
        """Start generating at once (the ticket is released when it ends); its pieces arrive on the returned queue."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()

        def put(kind: str, value: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the server is stopping
                loop.call_soon_threadsafe(pieces.put_nowait, (kind, value))

        def job() -> None:
            try:
                put("done", self.engine.complete(req, cancel, lambda text: put("text", text), lm))
            except BaseException as exc:  # handed to the response below
                put("error", exc)

        return pieces, self.queue.run(ticket, job)

    async def _stream(self, req: ChatRequest, pieces: asyncio.Queue, future: Future, cancel: threading.Event, ident: str,
                      created: int) -> AsyncIterator[str]:
        try:
            yield _sse(self._chunk(ident, created, req, {"role": "assistant", "content": ""}))
            while True:
                kind, value = await pieces.get()
                if kind == "text":
                    yield _sse(self._chunk(ident, created, req, {"content": value}))
                    continue
                # The job has handed over its last piece; wait until it has ended, so its place in the queue is free
                # before the client reads the end of the stream (a client that asks again at once was refused with a
                # 429 when the generation thread had not yet released it).
                with contextlib.suppress(Exception):
                    await asyncio.wrap_future(future)
                if kind == "done":
                    done: Completion = value  # type: ignore[assignment]
                    delta = {"content": done.text, "refusal": done.text} if done.blocked else {}  # the refusal replaces it
                    last = self._chunk(ident, created, req, delta, done.finish_reason)
                    if req.include_usage:
                        yield _sse(last)
                        last = {**self._head(ident, created), "object": "chat.completion.chunk", "choices": [], "usage": done.usage}
                    yield _sse({**last, "sap": done.sap})  # the verdict rides on the last chunk
                    if done.blocked:  # then the block itself, as an error event (the official client raises it)
                        yield _sse({"error": blocked_error(done)})
                else:
                    yield _sse(self._error_body(value))  # type: ignore[arg-type]
                break
            yield _sse("[DONE]")
        finally:
            if not future.done():
                cancel.set()  # the client went away: stop generating

    @staticmethod
    def _error_body(exc: BaseException) -> dict:
        return api_error_for(exc).body()


def create_app(engine: ChatEngine, config: ServeConfig) -> FastAPI:
    """The app for one model and polytope. ``app.state.queue`` is the request queue (for /health and tests)."""
    queue = RequestQueue(config.max_waiting)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        queue.shutdown()

    # No schema or docs pages are served (three paths, nothing to browse); ``app.openapi()`` still builds the schema,
    # which the schema fuzzer (tests/server/test_fuzz_server.py) reads, and ``sap_viz.serve.openapi`` describes the body.
    app = FastAPI(title="sap-viz", version=__version__, docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    if not config.api_key:
        app.add_middleware(KeylessGuard, respond=_error_response)
    app.state.queue = queue
    app.state.engine = engine
    started = int(time.time())
    endpoint = ChatEndpoint(engine, config, queue)

    async def check_key(request: Request) -> None:
        if not config.api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), config.api_key.encode()):
            raise ApiError(401, "Incorrect or missing API key: send it as 'Authorization: Bearer <key>' (the server's "
                                f"{API_KEY_ENV})", None, "invalid_api_key")

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    def model_card() -> dict:
        art = engine.art
        return {"id": config.model_name, "object": "model", "created": started, "owned_by": "sap-viz",
                "sap": {"polytope": config.polytope_name, "base_model": engine.lm.model_id, "layer": art.layer,
                        "facets": [art.facet_name(k) for k in range(art.polytope.num_facets)],
                        "steering_part": art.steering is not None, "default_mode": config.default_mode}}

    @v1.get("/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [model_card()]}

    @v1.get("/models/{model_id:path}")
    async def get_model(model_id: str) -> dict:
        if model_id != config.model_name:
            raise ApiError(404, f"The model '{model_id}' does not exist on this server; it serves '{config.model_name}'",
                           "model", "model_not_found")
        return model_card()

    @v1.post("/chat/completions", openapi_extra=chat_openapi(config.model_name, engine.limits.max_new_tokens,
                                                                        config.default_mode, config.default_max_tokens))
    async def chat_completions(request: Request):
        return await endpoint(request)

    moderations = ModerationEndpoint(engine, config, queue)

    @v1.post("/moderations", openapi_extra=moderation_openapi(config.model_name, engine.limits))
    async def create_moderation(request: Request):
        return await moderations(request)

    app.include_router(v1)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": config.model_name, "polytope": config.polytope_name, "queue": queue.state(),
                "auth": bool(config.api_key)}

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = (f"Unknown path {request.url.path}: this server answers GET /v1/models, POST /v1/chat/completions, "
                       "POST /v1/moderations and GET /health")
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return _error_response(ApiError(exc.status_code, message))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(bad_request(f"invalid request: {exc.errors()[0].get('msg') if exc.errors() else exc}"))

    @app.exception_handler(Exception)
    async def any_error(_: Request, exc: Exception) -> JSONResponse:
        return _error_response(api_error_for(exc))

    return app
