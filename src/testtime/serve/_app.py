"""`create_app`: the OpenAI-compatible FastAPI application in front of an engine and a scorer.

Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /v1/models/{model}`, `GET /health`. Every failure
a client can cause is a 4xx in OpenAI's error format naming the field (bodies that are not JSON, nest too
deeply or hold a lone surrogate included); a bug is a 500 with its traceback in the server log, never a dead
server. Handlers only parse, validate and await: strategies run on the batcher's worker thread.

A request holds one of `max_concurrent_requests` slots from admission until its answer, or until its client
disconnects: the handler watches the connection, frees the slot at once and cancels the job, which the worker
then skips if it has not started. When uvicorn's graceful-shutdown period ends with requests still running, it
cancels their handlers; they answer 503 `shutting_down` in OpenAI's format (not uvicorn's plain-text 500).
"""

# No `from __future__ import annotations` here: FastAPI reads the handlers' `request: Request` annotations at
# runtime, and `Request` is imported inside `create_app` (fastapi is an optional extra).
import asyncio
import hmac
import json
import logging
import sys
import time
import uuid
from contextlib import asynccontextmanager

from .._errors import MissingDependencyError, TesttimeError, UnknownNameError, ValidationError
from ..tasks import Problem
from ._batcher import Batcher, Job, ShuttingDown, streams_tokens
from ._config import ServeConfig
from ._format import (
    completion_body,
    error_body,
    stream_delta,
    stream_end,
    stream_error,
    stream_events,
    stream_start,
)
from ._request import ModelNotFound, parse_chat_request

__all__ = ["create_app"]

log = logging.getLogger("testtime.serve")


class _HTTPError(Exception):
    """A client error decided before any strategy runs."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def _status_of(exc: TesttimeError) -> tuple[int, str, str | None, str]:
    """(HTTP status, error type, param, code) for a testtime error."""
    if isinstance(exc, ShuttingDown):
        return 503, "server_error", None, "shutting_down"
    if isinstance(exc, ClientGone):
        return 499, "invalid_request_error", None, "client_closed_request"
    if isinstance(exc, ModelNotFound):
        return 404, "invalid_request_error", "model", "model_not_found"
    if isinstance(exc, ValidationError):
        return 400, "invalid_request_error", exc.parameter, "invalid_value"
    if isinstance(exc, UnknownNameError):
        return 400, "invalid_request_error", exc.kind, "invalid_value"
    return 500, "server_error", None, "engine_error"  # EngineError, ScorerError, DataError: not the client's fault


class ClientGone(TesttimeError):
    """The client disconnected before its answer was ready (nobody reads the 499 sent back)."""


async def _disconnected(request) -> None:
    """Return when the client closes the connection (the body has been read, so what comes next is the
    disconnect; an ASGI server also sends it once the response is complete)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _answer(request, future: asyncio.Future):
    """The job's result; `ClientGone` when the client leaves first, `ShuttingDown` when the server cancels the
    handler at the end of its graceful-shutdown period. Either way the job is cancelled, so the worker skips it
    if it has not started."""
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({future, gone}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        future.cancel()
        task = asyncio.current_task()
        if task is not None and sys.version_info >= (3, 11):
            task.uncancel()  # handled: answer the client instead of dying with uvicorn's plain-text 500
        raise ShuttingDown("the server shut down before this request finished (graceful-shutdown period over); send it again, to another server") from None
    finally:
        gone.cancel()
    if not future.done():
        future.cancel()
        raise ClientGone("the client closed the connection before the answer was ready")
    return future.result()


async def _next_text(future: asyncio.Future, texts: asyncio.Queue):
    """The next text update, or None once the answer is ready with no update left."""
    if not texts.empty():
        return texts.get_nowait()
    getter = asyncio.ensure_future(texts.get())
    try:
        await asyncio.wait({future, getter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
    return getter.result() if getter.done() and not getter.cancelled() else None


async def _first_text(request, future: asyncio.Future, texts: asyncio.Queue):
    """The first text update (None when the answer came first), watching the connection as `_answer` does;
    the answer's error, if it failed before any text, is raised here (the handler's 4xx)."""
    gone = asyncio.ensure_future(_disconnected(request))
    nxt = asyncio.ensure_future(_next_text(future, texts))
    try:
        await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        future.cancel()
        nxt.cancel()
        task = asyncio.current_task()
        if task is not None and sys.version_info >= (3, 11):
            task.uncancel()
        raise ShuttingDown("the server shut down before this request finished (graceful-shutdown period over); send it again, to another server") from None
    finally:
        gone.cancel()
    if not nxt.done():
        nxt.cancel()
        future.cancel()
        raise ClientGone("the client closed the connection before the answer was ready")
    text = nxt.result()
    if text is None:
        future.result()  # raises the answer's error: the handler's 4xx
    return text


def create_app(engine, scorer=None, config: ServeConfig | None = None):
    """An ASGI app serving `engine` (and `scorer`) with `config`'s defaults and limits. Run it with uvicorn
    (`testtime serve` does), or test it in-process with httpx's ASGI transport."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, StreamingResponse
        from starlette.exceptions import HTTPException as StarletteHTTPException
    except ImportError:
        raise MissingDependencyError("fastapi", "serve", "testtime serve") from None

    config = config or ServeConfig()
    batcher = Batcher(engine, scorer, policy=config.policy, window_s=config.batch_window_ms / 1000, max_batch=config.max_batch_requests, max_solving=config.max_concurrent_solves, prefill_chunk=config.prefill_chunk)
    admitted = {"n": 0}  # requests queued or running; only touched on the event loop, so no lock

    @asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.to_thread(batcher.close)  # joins the worker: off the loop

    app = FastAPI(title="testtime", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher
    app.state.config = config

    def error(status: int, message: str, *, type: str = "invalid_request_error", param=None, code=None, headers=None):
        return JSONResponse(error_body(message, type=type, param=param, code=code), status_code=status, headers=headers)

    @app.exception_handler(_HTTPError)
    async def _http_error(request, exc: _HTTPError):
        return error(exc.status, exc.message, param=exc.param, code=exc.code, headers=exc.headers)

    @app.exception_handler(TesttimeError)
    async def _testtime_error(request, exc: TesttimeError):
        status, kind, param, code = _status_of(exc)
        return error(status, exc.message, type=kind, param=param, code=code)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(request, exc):
        message = {404: f"no route {request.url.path}; this server has POST /v1/chat/completions, GET /v1/models, GET /v1/models/{{model}}, GET /health", 405: f"method {request.method} is not allowed on {request.url.path}"}
        return error(exc.status_code, message.get(exc.status_code, str(exc.detail)), code="not_found" if exc.status_code == 404 else None)

    @app.exception_handler(Exception)
    async def _bug(request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return error(500, "internal error; the server log has the traceback", type="server_error", code="internal_error")

    def check_auth(request: Request) -> None:
        if config.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        # compare_digest: the comparison takes as long for a wrong first byte as a wrong last one.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), config.api_key.encode()):
            raise _HTTPError(401, "missing or wrong API key; send `Authorization: Bearer <key>`.", code="invalid_api_key")

    async def read_json(request: Request):
        length = request.headers.get("content-length")
        too_big = _HTTPError(413, f"request body over {config.max_body_bytes} bytes (--max-body-bytes).", param="body", code="request_too_large")
        if length is not None and length.isdigit() and int(length) > config.max_body_bytes:
            raise too_big
        data, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_body_bytes:
                raise too_big
            data.append(chunk)
        too_deep = _HTTPError(400, "the request body nests JSON arrays or objects too deeply.", param="body", code="invalid_json")
        try:
            body = json.loads(b"".join(data))
        except RecursionError:
            raise too_deep from None
        except ValueError:
            raise _HTTPError(400, "the request body is not valid JSON (UTF-8).", param="body", code="invalid_json") from None
        try:
            # JSON's \uXXXX escapes can spell a lone surrogate, which no UTF-8 tokenizer or response can hold.
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except RecursionError:
            raise too_deep from None
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end].encode("utf-8", "backslashreplace").decode()
            raise _HTTPError(400, f"the request body holds a lone surrogate ({bad}); strings must be valid Unicode.", param="body", code="invalid_json") from None
        return body

    @app.get("/health")
    async def health():
        usage = engine.usage  # read from the worker's counters: ints, no lock needed
        return {
            "status": "ok",
            "model": config.model_name,
            "in_flight": admitted["n"],
            "num_batches": batcher.num_batches,
            "num_requests": batcher.num_jobs,
            # Prompt tokens computed, and read from the engine's prefix cache instead, since the server started.
            "num_prefill_tokens": usage.num_prefill_tokens,
            "num_cached_prompt_tokens": usage.num_cached_prompt_tokens,
        }

    model_card = {"id": config.model_name, "object": "model", "created": 0, "owned_by": "testtime"}

    @app.get("/v1/models")
    async def models(request: Request):
        check_auth(request)
        return {"object": "list", "data": [model_card]}

    @app.get("/v1/models/{model:path}")
    async def model(request: Request, model: str):
        check_auth(request)
        if model != config.model_name:
            raise _HTTPError(404, f"model {model!r} is not served here; this server serves {config.model_name!r}.", param="model", code="model_not_found")
        return model_card

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_auth(request)
        body = await read_json(request)
        req = parse_chat_request(body, request.headers, config, has_scorer=scorer is not None)
        if admitted["n"] >= config.max_concurrent_requests:
            raise _HTTPError(
                429,
                f"{admitted['n']} requests are in progress, the most this server admits (--max-concurrent-requests); retry shortly.",
                code="rate_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        # A seeded request's problem id is a function of its seed, so the same request and seed give the same
        # candidates whatever else is in the batch; unseeded requests get a fresh random id.
        problem_id = f"seed-{req.seed}" if req.seed is not None else f"req-{uuid.uuid4().hex}"
        problem = Problem(id=problem_id, question=req.question, messages=req.messages, last_number_fallback=config.last_number_fallback)
        loop = asyncio.get_running_loop()
        job = Job(problem=problem, strategy=req.strategy, budget=req.budget, sampling=req.sampling, future=loop.create_future(), loop=loop, partial=req.partial)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if req.stream and req.sampling.logprobs is None and streams_tokens(req.strategy, req.budget, req.partial):
            return await _stream_tokens(request, req, job, request_id, created)
        admitted["n"] += 1
        try:
            result = await _answer(request, batcher.submit(job))
        finally:
            admitted["n"] -= 1
        if req.stream:

            async def events():
                for event in stream_events(request_id, created, config.model_name, result, req, job.num_prompt_tokens):
                    yield event

            return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return JSONResponse(completion_body(request_id, created, config.model_name, result, req, job.num_prompt_tokens))

    async def _stream_tokens(request, req, job: Job, request_id: str, created: int):
        """A single-sample reply sent as it decodes. The status line waits for the first text (or the answer),
        so a request that fails before generating anything (a prompt over the context) still gets its 4xx; an
        error after that ends the stream with an error event."""
        texts: asyncio.Queue[str] = asyncio.Queue()
        job.on_text = lambda text: job.loop.call_soon_threadsafe(texts.put_nowait, text)
        admitted["n"] += 1
        future = batcher.submit(job)
        try:
            first = await _first_text(request, future, texts)
        except BaseException:
            admitted["n"] -= 1
            raise

        async def events():
            sent, text = "", first
            model = config.model_name
            try:
                yield stream_start(request_id, created, model)
                while True:
                    if text is not None and len(text) > len(sent):
                        yield stream_delta(request_id, created, model, text[len(sent) :])
                        sent = text
                    if future.done() and texts.empty():
                        break
                    text = await _next_text(future, texts)
                try:
                    result = future.result()
                except TesttimeError as exc:
                    for event in stream_error(str(exc), code=_status_of(exc)[3]):
                        yield event
                    return
                except Exception as exc:
                    log.error("streamed request failed", exc_info=exc)
                    for event in stream_error("the server failed while answering; see its log", code="engine_error"):
                        yield event
                    return
                for event in stream_end(request_id, created, model, result, req, job.num_prompt_tokens, sent=sent):
                    yield event
            finally:
                if not future.done():
                    future.cancel()  # the client went away mid-stream: its row leaves the batch
                admitted["n"] -= 1

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app
