"""The HTTP core every remote backend shares: a fleet of base URLs, a concurrency limit, bounded retries.

Our public API is synchronous, but a remote engine must keep hundreds of requests in flight to keep a GPU
server busy. So each `RemoteClient` owns one asyncio event loop on a background thread and one
`httpx.AsyncClient` living in it (connections are reused across calls); sync callers hand it a coroutine and
block on the result. This works from any thread, including one that already runs an event loop of its own.

Retry rule (httpx and the OpenAI client do the same): 408, 429, 500, 502, 503, 504, connection errors and
timeouts are retried up to `max_retries` times; a `Retry-After` header is honoured (capped at `MAX_BACKOFF`),
otherwise the wait is "full jitter" exponential backoff, uniform in [0, min(MAX_BACKOFF, backoff * 2**k)]
(AWS Architecture Blog, "Exponential Backoff And Jitter", 2015), which spreads a fleet's retries apart.
Each attempt goes to the next base URL in round-robin order, and a retry never goes straight back to the
server that just failed (with two or more), so a dead server costs one retry, not a failure.
Any other status is the caller's mistake and fails at once with the server's own message.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from .._errors import EngineError, MissingDependencyError, TesttimeError, ValidationError

__all__ = [
    "RemoteClient",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "DEFAULT_BACKOFF",
    "MAX_BACKOFF",
    "RETRY_STATUSES",
    "gather_all",
    "normalize_base_urls",
]

DEFAULT_MAX_CONCURRENCY = 64  # requests in flight per client; vLLM batches them, more mostly queues server-side
DEFAULT_MAX_RETRIES = 4  # 5 attempts in all
DEFAULT_TIMEOUT = 600.0  # seconds per attempt: a long completion on a busy server can legitimately take minutes
DEFAULT_BACKOFF = 0.5  # seconds; the first retry waits up to this, doubling each attempt
MAX_BACKOFF = 30.0
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

T = TypeVar("T")


def normalize_base_urls(base_url: str | Sequence[str], *, parameter: str = "base_url") -> list[str]:
    """One URL or several (a list, or one comma-separated string), without trailing slashes."""
    urls = [u.strip() for u in base_url.split(",")] if isinstance(base_url, str) else [str(u).strip() for u in base_url]
    urls = [u.rstrip("/") for u in urls if u]
    if not urls:
        raise ValidationError(f"`{parameter}` needs at least one URL, got {base_url!r}.", parameter=parameter, value=base_url)
    for u in urls:
        if not u.startswith(("http://", "https://")):
            raise ValidationError(
                f"`{parameter}` entries must start with http:// or https://, got {u!r} (e.g. http://127.0.0.1:8000/v1).",
                parameter=parameter,
                value=u,
            )
    return urls


async def gather_all(coros: Sequence[Awaitable[T]]) -> list[T]:
    """`asyncio.gather` that cancels the siblings when one fails, so a failed batch leaves nothing running."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(response) -> str:
    """The server's own error text in one short line (OpenAI, vLLM and FastAPI shapes), else the reason phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    msg = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            msg = err.get("message")
        elif isinstance(err, str):
            msg = err
        msg = msg or body.get("message") or body.get("detail")
    if not msg:
        msg = response.text or response.reason_phrase or ""
    msg = " ".join(str(msg).split())
    return msg[:300] + ("..." if len(msg) > 300 else "")


class RemoteClient:
    """POSTs JSON to a fleet of servers with a concurrency limit and bounded retries.

    Args:
        base_urls: Servers used round-robin, e.g. ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"].
        api_key: Sent as `Authorization: Bearer <api_key>` when given.
        max_concurrency: Requests in flight at once, across all servers and all calling threads.
        max_retries: Retries per request after the first attempt (0 disables retrying).
        timeout: Seconds one attempt may take, connecting included.
        backoff: Upper bound of the first retry's random wait, in seconds; doubles per attempt up to MAX_BACKOFF.
        what: Who is calling, for error messages ("OpenAIEngine").
        error: The error class raised on failure (`EngineError` for engines, `ScorerError` for scorers).
    """

    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        api_key: str | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
        backoff: float = DEFAULT_BACKOFF,
        what: str = "remote engine",
        error: type[TesttimeError] = EngineError,
    ) -> None:
        try:
            import httpx
        except ImportError:
            raise MissingDependencyError("httpx", "remote", what) from None
        for name, value, ok in [
            ("max_concurrency", max_concurrency, isinstance(max_concurrency, int) and max_concurrency >= 1),
            ("max_retries", max_retries, isinstance(max_retries, int) and max_retries >= 0),
            ("timeout", timeout, isinstance(timeout, (int, float)) and timeout > 0),
            ("backoff", backoff, isinstance(backoff, (int, float)) and backoff >= 0),
        ]:
            if not ok:
                bound = ">= 0" if name in ("max_retries", "backoff") else "> 0"
                raise ValidationError(f"`{name}` must be a number {bound}, got {value!r}.", parameter=name, value=value)
        self._httpx = httpx
        self.base_urls = list(base_urls)
        self.api_key = api_key
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout = float(timeout)
        self.backoff = float(backoff)
        self.what = what
        self.error = error
        self.num_requests = 0
        """HTTP attempts made, retries included."""
        self.num_retries = 0
        """Attempts that were retries (a healthy fleet keeps this near 0)."""
        self.sleep: Callable[[float], Coroutine[Any, Any, None]] = asyncio.sleep  # tests record waits instead
        self._next_url = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client = None
        self._semaphore: asyncio.Semaphore | None = None
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"RemoteClient({', '.join(self.base_urls)})"

    # -- the background loop ----------------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"testtime-{self.what}", daemon=True)
                thread.start()
                asyncio.run_coroutine_threadsafe(self._open(), loop).result()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _open(self) -> None:
        httpx = self._httpx
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        # The pool matches the semaphore, so no request waits on a connection it was already admitted for.
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        self._client = httpx.AsyncClient(headers=headers, limits=limits, timeout=self.timeout)
        self._semaphore = asyncio.Semaphore(self.max_concurrency)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the client's loop and wait for it (from any thread but the loop's own)."""
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("RemoteClient.run called from its own event loop; await the coroutine instead")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C or a caller's timeout: stop the in-flight requests too
            raise

    def close(self) -> None:
        """Close connections and stop the background loop; the client restarts on next use."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None:
            return
        if self._client is not None:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    # -- requests ---------------------------------------------------------------------------------------
    def _pick_url(self, avoid: str | None = None) -> str:
        """The next server in round-robin order; a retry skips the server that just failed when it can."""
        url = self.base_urls[self._next_url % len(self.base_urls)]
        self._next_url += 1
        if url == avoid and len(self.base_urls) > 1:
            url = self.base_urls[self._next_url % len(self.base_urls)]
            self._next_url += 1
        return url

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_BACKOFF)
        return self._rng.uniform(0.0, min(MAX_BACKOFF, self.backoff * 2**attempt))

    async def post(self, path: str, payload: dict, *, on_reject: Callable[[int, str], dict | None] | None = None) -> tuple[str, dict]:
        """POST `payload` to `path` on the next server; returns (base URL that answered, JSON body).

        `on_reject(status, message)` is asked once when a server rejects the request (a status that is not
        retried): it returns another payload to send instead (say, a text prompt for a server that takes no token
        ids), or None to fail. Raises `self.error` with a one-line message naming the server, the status and what
        to do."""
        assert self._semaphore is not None and self._client is not None, "use RemoteClient.run"
        async with self._semaphore:
            return await self._attempts(path, payload, on_reject)

    async def _attempts(self, path: str, payload: dict, on_reject) -> tuple[str, dict]:
        httpx = self._httpx
        attempts = self.max_retries + 1
        url = None
        for attempt in range(attempts):
            url = self._pick_url(avoid=url)
            retry_after = None
            self.num_requests += 1
            try:
                response = await self._client.post(url + path, json=payload)
            except httpx.TimeoutException:
                last = f"no answer within {self.timeout:g} s"
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__}: {' '.join(str(exc).split())[:120] or 'no detail'})"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return url, self._json(url + path, response)
                message = _server_message(response)
                if status not in RETRY_STATUSES:
                    alternative = on_reject(status, message) if on_reject is not None else None
                    if alternative is not None:
                        return await self._attempts(path, alternative, None)
                    raise self.error(
                        f"{self.what}: {url}{path} answered {status}: {message} "
                        f"(a request the server rejects is not retried; fix the request or the server's settings)"
                    )
                last = f"{status} {message}"
                retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt + 1 < attempts:
                self.num_retries += 1
                await self.sleep(self._delay(attempt, retry_after))
        raise self.error(
            f"{self.what}: POST {path} failed {attempts} times (last: {url}: {last}); check that the server"
            f"{'s are' if len(self.base_urls) > 1 else ' is'} up and not overloaded, or raise `max_retries` / `timeout` (--max-retries / --request-timeout)"
        )

    def _json(self, where: str, response) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise self.error(f"{self.what}: {where} answered {response.status_code} with a body that is not a JSON object: {response.text[:120]!r}")
        return body
