"""`gen serve`: bundles served on the Open Inference Protocol by KServe's model server.

KServe's pieces are used as they are (its DataPlane, model repository, v2 REST endpoints and gRPC
servicer, Prometheus /metrics); gen adds what its ModelServer does not offer for a server on an
open network:

- the bind address (KServe listens on 0.0.0.0; gen on 127.0.0.1 unless told) and a bearer token
  on every route but liveness (REST and gRPC);
- limits: the body of one request (--max-body-mb); the bytes of all requests being read or
  answered at once (--max-inflight-mb): REST bodies counted as their bytes arrive (so a client
  holds only what it sent) and a sample's answer before it is drawn, a request waiting for room
  up to --timeout-s, then 503; gRPC inference calls, whose core reads a whole message before gen
  sees it, let in by count (--max-inflight-mb / --max-body-mb at once); and time: a request's
  headers must arrive within --read-timeout-s, its body may pause at most that long (REST), a
  gRPC call's message must arrive within it (408, DEADLINE_EXCEEDED);
- one line, never a traceback, per refused request (at most LOG_LINES every LOG_WINDOW_S, then a
  count of the lines left out), and no dropped connection, for anything a client sends;
- adaptive batching per model (AdaptiveBatcher);
- on SIGTERM (or SIGINT): stop accepting (REST and gRPC), answer every request already accepted,
  requests the kernel queued before the port closed included, then exit 0 (uvicorn's and
  grpc.aio's graceful shutdown, given at most --grace-s).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import hmac
import itertools
import json
import logging
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gen.runtime.errors import ConfigError, GenError, MissingDependency, UsageError

from . import pages
from .batching import AdaptiveBatcher
from .verbs import (DTYPES, ROW_VERBS, check_binary_body, completion_rows, rows_of, run_rows, sample_options,
                    served_verbs, signature, tensor_array)

OPEN_ROUTES = ("/v2/health/live", "/")  # answered without the token (liveness probes)
# KServe's app also mounts the model repository extension (load / unload a model) and the v1
# protocol; gen serves a fixed set of bundles on v2 only, so those answer 404.
CLOSED_PREFIXES = ("/v2/repository", "/v1/", "/docs", "/redoc", "/openapi.json")


LOG = logging.getLogger("gen.serve")
# A flood of bad requests must not fill the disk: at most LOG_LINES lines per LOG_WINDOW_S, and the
# next line logged says how many were left out.
LOG_LINES, LOG_WINDOW_S = 10, 1.0
# On SIGTERM, a connection with no request under way yet is given this long to deliver one (its
# client connected before the port closed, and may be sending it now), then closed.
DRAIN_IDLE_S = 1.0
# uvicorn's httptools protocol sets no limit on a request's headers; bytes received outside a body
# count (a read may carry the start of a body too, hence the margin).
MAX_HEADER_BYTES = 1 << 20
GRPC_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED",
              413: "RESOURCE_EXHAUSTED", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE"}  # any other status: INTERNAL


@dataclass
class Limits:
    max_batch: int = 4096          # rows gathered into one call
    max_delay_ms: float = 5.0      # how long the first request of a batch waits for others
    max_request_rows: int = 65536  # rows (or samples) one request may ask for
    max_body_bytes: int = 64 << 20
    max_inflight_bytes: int = 128 << 20  # request bytes being read or answered at once, all requests together
    timeout_s: float = 30.0        # a request waiting longer (for room, or for its answer) is answered 503
    read_timeout_s: float = 30.0   # for a request's headers to arrive; the longest pause within a body

    @property
    def grpc_calls(self) -> int:
        """gRPC inference calls let in at once: each may hold a whole body before gen sees it."""
        return max(1, self.max_inflight_bytes // self.max_body_bytes)

    def __post_init__(self):
        if self.max_inflight_bytes < self.max_body_bytes:
            raise ConfigError(f"--max-inflight-mb {self.max_inflight_bytes / 2**20:g} is below --max-body-mb "
                              f"{self.max_body_bytes / 2**20:g}: a body at the limit could never be let in")


def check_token(token: str | None) -> None:
    """One line if `token` cannot protect the server: empty or blank (an empty
    $GEN_SERVE_TOKEN would serve everyone, an empty --token no one), or not printable ASCII
    without spaces (HTTP headers and gRPC metadata carry it, and trim spaces)."""
    if token is None:
        return
    if not token.strip():
        raise ConfigError("--token (or $GEN_SERVE_TOKEN) is empty; give a token, or unset both to serve "
                          "without one")
    if not all("!" <= c <= "~" for c in token):
        raise ConfigError("--token (or $GEN_SERVE_TOKEN): expected printable ASCII without spaces (it is sent "
                          "in an HTTP header)")


def one_line(text, limit: int = 500) -> str:
    """`text` on one line (a client's model name or value may hold newlines), at most `limit` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit] + "..."


class RateLimit(logging.Filter):
    """Lets at most `lines` records through per `window` seconds; the next record let through
    after some were dropped says how many."""

    def __init__(self, lines: int = LOG_LINES, window: float = LOG_WINDOW_S):
        super().__init__()
        self.lines, self.window = lines, window
        self.start, self.count, self.dropped = float("-inf"), 0, 0
        self.lock = threading.Lock()  # uvicorn logs from the event loop, gRPC and executors from threads

    def filter(self, record: logging.LogRecord) -> bool:
        with self.lock:
            now = time.monotonic()
            if now - self.start >= self.window:
                self.start, self.count = now, 0
            if self.count >= self.lines and not getattr(record, "unlimited", False):
                self.dropped += 1
                return False
            self.count += 1
            dropped, self.dropped = self.dropped, 0
        if dropped:
            record.msg, record.args = f"{record.getMessage()} ({dropped} lines suppressed before this one)", None
        return True


class OneLineFormatter(logging.Formatter):
    """A record on one line, whatever its message, and never a traceback."""

    def formatException(self, ei) -> str:
        return ""

    def formatStack(self, stack_info) -> str:
        return ""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None
        line = super().format(record)
        if record.exc_info and record.exc_info[1] is not None:
            line += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        return one_line(line, 2000)


def log_to_stderr() -> RateLimit:
    """gen's, uvicorn's and KServe's server logs on stderr: one line a record, rate-limited."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(message)s"))
    limit = RateLimit()
    handler.addFilter(limit)
    for name in ("gen.serve", "uvicorn.error", "kserve", "kserve.trace"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.WARNING)
    return limit


def refusal(exc: BaseException) -> tuple[int, str]:
    """(HTTP status, one-line message) for an error raised while answering a request, REST or
    gRPC: KServe's and FastAPI's errors with their status; anything else is gen's failure, 500."""
    from fastapi.exceptions import RequestValidationError
    from kserve.errors import (InferenceError, InvalidInput, ModelNotFound, ModelNotReady, ServerNotLive,
                               ServerNotReady, UnsupportedProtocol)
    from starlette.exceptions import HTTPException

    if isinstance(exc, Refused):
        return exc.status, exc.message
    if isinstance(exc, RequestValidationError):  # FastAPI's 422 for a body that is not the protocol's JSON
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        return 400, one_line(f"request {where}: {first.get('msg', 'not a valid inference request')}")
    if isinstance(exc, HTTPException):
        return exc.status_code, one_line(exc.detail)
    if isinstance(exc, (InvalidInput, UsageError)):
        return 400, one_line(exc)
    if isinstance(exc, ModelNotFound):
        return 404, one_line(exc)
    if isinstance(exc, (ModelNotReady, ServerNotReady, ServerNotLive)):
        return 503, one_line(exc)
    if isinstance(exc, (NotImplementedError, UnsupportedProtocol)):
        return 501, one_line(exc) or "not implemented"
    if isinstance(exc, InferenceError):
        status = str(exc.status or "500")
        return (int(status) if status.isdigit() else 500), one_line(exc.reason)
    return 500, one_line(f"internal error ({type(exc).__name__}: {exc})")


def log_refusal(status: int, where: str, message: str) -> None:
    """The one line a refused request leaves in the log."""
    LOG.log(logging.ERROR if status >= 500 and status != 503 else logging.WARNING, "%d %s: %s", status,
            one_line(where, 200), message)


class ByteBudget:
    """Request bytes admitted at once, across all requests (REST and gRPC): a request waits,
    first come first served, until its bytes fit, so memory stays bounded however many
    clients send big bodies together. (gRPC's inference calls are counted by one too, a unit
    a call.)"""

    def __init__(self, limit: int):
        self.limit, self.used = int(limit), 0
        self.waiting: collections.deque = collections.deque()  # (size, future, holder)

    async def acquire(self, size: int, timeout: float, holder: Held | None = None) -> bool:
        """Reserve `size` bytes (at most the whole budget) for `holder`; False if they did not
        fit within `timeout` s, or at once if `holder` is the youngest of requests that all
        wait for more while they hold every byte in use (none would ever give any back)."""
        size = min(int(size), self.limit)
        if not self.waiting and self.used + size <= self.limit:
            self.used += size
            return True
        entry = (size, asyncio.get_running_loop().create_future(), holder)
        self.waiting.append(entry)
        self._admit()
        try:
            return await asyncio.wait_for(entry[1], timeout)
        except asyncio.TimeoutError:
            self._give_up(entry)
            return False
        except asyncio.CancelledError:  # the client went away while waiting
            self._give_up(entry)
            raise

    def _give_up(self, entry: tuple) -> None:
        size, future, _ = entry
        if future.done() and not future.cancelled():
            if future.result():  # granted just as the wait ended
                self.release(size)
            return
        future.cancel()
        if entry in self.waiting:
            self.waiting.remove(entry)
        self._admit()

    def busy(self) -> str:
        """The refusal of a request that found no room in time."""
        return f"busy: {self.limit / 2**20:g} MiB of request bodies in flight (--max-inflight-mb); try again"

    def release(self, size: int) -> None:
        """Give back what acquire(`size`) reserved."""
        self.used -= min(int(size), self.limit)
        self._admit()

    def _admit(self) -> None:
        while self.waiting and self.used + self.waiting[0][0] <= self.limit:
            size, future, _ = self.waiting.popleft()
            if not future.done():
                self.used += size
                future.set_result(True)
        # No room for the first in line, and every byte in use held by requests that wait for
        # more (bodies received in part, each waiting for room): none would give any back, so
        # the youngest of them is refused; what it holds comes back through release().
        stuck = [entry for entry in self.waiting if entry[2] is not None and entry[2].bytes and not entry[1].done()]
        if stuck and sum(entry[2].bytes for entry in stuck) >= self.used:
            youngest = max(stuck, key=lambda entry: entry[2].order)
            self.waiting.remove(youngest)
            youngest[1].set_result(False)


class Held:
    """What one request holds in a ByteBudget (its body as it arrives, a sample's answer),
    given back at once when it has been answered."""

    arrivals = itertools.count()

    def __init__(self, budget: ByteBudget):
        self.budget, self.bytes, self.order = budget, 0, next(Held.arrivals)

    async def take(self, size: int, timeout: float) -> bool:
        """Reserve `size` more bytes, at most what the budget has beyond those held already (a
        request never waits on itself); False if they did not fit (see ByteBudget.acquire)."""
        size = min(int(size), self.budget.limit - self.bytes)
        if size > 0:
            if not await self.budget.acquire(size, timeout, self):
                return False
            self.bytes += size
        return True

    def release(self) -> None:
        """Give back everything taken."""
        self.budget.release(self.bytes)
        self.bytes = 0


# The Held of the request being answered: set by GuardMiddleware (REST) and the gRPC interceptor,
# read by the model's predict, which runs in the request's context.
HELD: contextvars.ContextVar[Held] = contextvars.ContextVar("gen_serve_held")


def import_kserve():
    """kserve, imported without letting it parse gen's command line (it reads sys.argv at import)."""
    import os

    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's C core logs to stderr; gen reports errors itself
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        import kserve
        from kserve.protocol.infer_type import InferOutput, InferResponse  # noqa: F401
    except ImportError:
        raise MissingDependency("gen serve needs KServe's model server: pip install 'gen[serve]'") from None
    finally:
        sys.argv = argv
    return kserve


def build_models(bundles: list[tuple[str, object]], limits: Limits) -> list:
    """One KServe model per (bundle, verb), named NAME.VERB, plus NAME for the first verb."""
    kserve = import_kserve()
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferResponse

    class VerbModel(kserve.Model):
        def __init__(self, name: str, model, verb: str):
            super().__init__(name)
            self.model, self.verb = model, verb
            self.inputs, self.outputs = signature(model, verb)
            self.batcher = (AdaptiveBatcher(lambda rows: run_rows(model, verb, rows), limits.max_batch,
                                            limits.max_delay_ms / 1000.0) if verb in ROW_VERBS else None)
            self.ready = True

        def load(self) -> bool:
            self.ready = True
            return True

        def get_input_types(self) -> list[dict]:
            return [t.as_dict() for t in (self.inputs if self.verb in ROW_VERBS else [])]

        def get_output_types(self) -> list[dict]:
            return [t.as_dict() for t in self.outputs]

        async def predict(self, payload, headers=None, response_headers=None):
            try:
                inputs = {}
                for tensor in payload.inputs:
                    if tensor.name in inputs:
                        raise UsageError(f"input {tensor.name!r}: given twice")
                    raw = getattr(tensor, "_raw_data", None)  # binary data (gRPC raw contents), not decoded
                    inputs[tensor.name] = tensor_array(tensor.name, tensor.datatype, tensor.shape,
                                                       None if raw is not None else tensor.data, raw)
                parameters = parameters_of(payload)
                if self.verb == "sample":
                    values = int(np.prod(self.model.shape))
                    n, seed = sample_options(inputs, parameters, limits.max_request_rows, values,
                                             limits.max_body_bytes)
                    # The answer is held like a body: its float32 bytes (held to --max-body-mb) wait
                    # for room in the budget before they are drawn.
                    held = HELD.get(None)
                    if held is not None and not await held.take(n * values * 4, limits.timeout_s):
                        raise Refused(503, held.budget.busy(), RETRY)
                    work = self._sample(n, seed)
                else:
                    work = self._rows(inputs)
                outputs = await asyncio.wait_for(work, limits.timeout_s)
            except UsageError as exc:
                raise InvalidInput(str(exc)) from None
            except asyncio.TimeoutError:
                from kserve.errors import InferenceError

                raise InferenceError(f"{self.name}: no answer within {limits.timeout_s:g} s", status="503") from None
            except GenError as exc:
                from kserve.errors import InferenceError

                raise InferenceError(str(exc)) from None
            infer_outputs = [InferOutput(name=name, shape=list(value.shape), datatype=_datatype(value), data=value)
                             for name, value in outputs.items()]
            if getattr(payload, "from_grpc", False):
                # tritonclient.grpc (like Triton) reads outputs from raw_output_contents only; and
                # KServe's to_grpc() fails on arrays it would have to test for truth.
                for output in infer_outputs:
                    output.set_data_from_numpy(output.data, binary_data=True)
                    output.parameters = None  # binary_data_size is REST's; gRPC has raw contents
            return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=infer_outputs,
                                 use_binary_outputs=payload.use_binary_outputs,
                                 requested_outputs=payload.request_outputs)

        async def _sample(self, n: int, seed: int) -> dict:
            loop = asyncio.get_running_loop()
            samples = await loop.run_in_executor(None, lambda: self.model.sample(n, seed=seed))
            return {"samples": np.ascontiguousarray(samples, dtype=np.float32)}

        async def _rows(self, inputs: dict) -> dict:
            if self.verb == "complete":
                rows = completion_rows(self.model, inputs, limits.max_request_rows)
            else:
                rows = rows_of(self.model, inputs, limits.max_request_rows, narrow=True)
            return await self.batcher.submit(rows)

    models = []
    for name, model in bundles:
        verbs = served_verbs(model)
        for verb in verbs:
            models.append(VerbModel(f"{name}.{verb}", model, verb))
        if verbs:
            models.append(VerbModel(name, model, verbs[0]))
    return models


class Unreadable:
    """A gRPC parameter of a kind KServe's protocol lacks (Triton's double_param, uint64_param)."""

    def __repr__(self) -> str:
        return "a double or uint64 value (this server reads int64_param, bool_param and string_param)"


def parameters_of(payload) -> dict:
    """A request's parameters as plain values: REST's JSON ones as they are, gRPC's
    InferParameter messages as the value they hold."""
    values = {}
    for key, value in dict(payload.parameters or {}).items():
        if hasattr(value, "WhichOneof"):
            kind = value.WhichOneof("parameter_choice")
            value = getattr(value, kind) if kind else Unreadable()
        values[key] = value
    return values


def _datatype(value: np.ndarray) -> str:
    return next(name for name, dtype in DTYPES.items() if np.dtype(dtype) == value.dtype)


# Headers of a refusal: the connection closes (a stalled body), and when to try again (no room:
# the rest of that body is read and dropped, as most clients send it all before they read an answer).
CLOSE, RETRY = [(b"connection", b"close")], [(b"retry-after", b"1")]


class Refused(Exception):
    """A request refused by gen (while its body was read: over the limit, stalled, no room; or
    no room for its answer): (status, message) and the headers its answer carries."""

    def __init__(self, status: int, message: str, headers: list | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, list(headers or [])


class GuardMiddleware:
    """ASGI middleware in front of KServe's app: the bearer token on every route but liveness;
    the body limit (by Content-Length, and by counting the bytes of a body sent without one);
    the bytes in flight (each part of a body waits for room in `budget` as it arrives, and the
    request holds it until it is answered); the body's read timeout; and one line, never a
    traceback nor a dropped keep-alive connection, for whatever else fails while answering."""

    def __init__(self, app, token: str | None, limits: Limits, budget: ByteBudget):
        self.app, self.token, self.limits, self.budget = app, token, limits, budget

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        where = f"{scope.get('method', '')} {path}"
        if any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in CLOSED_PREFIXES):
            return await _refuse(send, where, 404, f"{path}: not served (gen serve answers the Open Inference "
                                                   "Protocol v2)")
        if self.token is not None and path not in OPEN_ROUTES and path != pages.LOGIN:
            given = headers.get("authorization", "")
            if not (hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode())
                    or pages.is_page(path) and pages.has_page_cookie(headers, self.token)):
                if pages.is_page(path) and scope.get("method") == "GET" and not given:  # a browser: to the form
                    return await _redirect(send, pages.LOGIN)
                return await _refuse(send, where, 401, "missing or wrong bearer token (Authorization: Bearer TOKEN)",
                                     [(b"www-authenticate", b"Bearer")])
        length = headers.get("content-length")
        limit = self.limits.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            return await _refuse(send, where, 413, f"request body of {int(length)} bytes is over the limit of "
                                                   f"{limit} (--max-body-mb)")
        if path.endswith("/infer") and "inference-header-content-length" not in headers \
                and headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # The protocol: a body without the binary extension's header is JSON, whatever its
            # content type (tritonclient sends none); KServe would read it as binary.
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
                     + [(b"content-type", b"application/json")]}
        held = Held(self.budget)
        entered = HELD.set(held)
        started = False

        async def sending(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, self.reader(scope, receive, held), sending)
        except Exception as exc:  # noqa: BLE001 - one line for anything, and the connection kept
            status, message = refusal(exc)
            if started:
                log_refusal(status, where, message)
            else:
                await _refuse(send, where, status, message, exc.headers if isinstance(exc, Refused) else None)
        finally:
            held.release()
            HELD.reset(entered)

    def reader(self, scope, receive, held: Held):
        """`receive`, counting the body's bytes against the limit (413); reserving each part in
        the budget as it arrives, so a client holds only what it sent (no room within
        --timeout-s, or stuck with others that all wait for room: 503); and refusing a body
        that pauses --read-timeout-s (408: a pause, not a deadline, so a slow upload of a big
        body goes through). FastAPI turns an error raised while it reads a body into its own
        400; the refusal noted in the scope's state lets gen's handler answer it instead."""
        limits = self.limits
        seen, done = 0, False

        def refused(status: int, message: str, headers: list | None = None) -> Refused:
            exc = Refused(status, message, headers)
            scope.setdefault("state", {})["gen_refused"] = exc
            return exc

        async def read():
            nonlocal seen, done
            if done:  # after the body, an app may wait for the client to go away: no timeout then
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), limits.read_timeout_s)
            except asyncio.TimeoutError:
                raise refused(408, f"request body stalled: nothing received for {limits.read_timeout_s:g} s "
                                   "(--read-timeout-s)", CLOSE) from None
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                seen += size
                if seen > limits.max_body_bytes:
                    raise refused(413, f"request body is over the limit of {limits.max_body_bytes} bytes "
                                       "(--max-body-mb)")
                if not await held.take(size, limits.timeout_s):
                    raise refused(503, self.budget.busy(), RETRY)
            done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return read


async def _redirect(send, location: str) -> None:
    """303 to `location` (a page that needs the token sends a browser to the token form)."""
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode()), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def _refuse(send, where: str, status: int, message: str, headers: list | None = None) -> None:
    """Answer `status` with the protocol's {"error": message}, and log it in one line."""
    log_refusal(status, where, message)
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def grpc_server(dataplane, extension, host: str, port: int, token: str | None, limits: Limits, budget: ByteBudget):
    """KServe's gRPC inference servicer (the protocol's GRPCInferenceService) on a grpc.aio
    server bound to `host` (KServe's own binds every interface and has no token), behind the
    same bearer token, bytes-in-flight budget and one-line refusals as REST, and with at most
    limits.grpc_calls inference calls let in at once. Returns (server, bound port); not started."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from grpc import aio
    from google.protobuf.message import DecodeError
    from grpc_interceptor import AsyncExceptionToStatusInterceptor
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
    from kserve.protocol.grpc.servicer import InferenceServicer

    def refuse(method: str, status: int, message: str):
        log_refusal(status, f"grpc {method.rsplit('/', 1)[-1]}", message)

        async def refused(request, context):
            await context.abort(getattr(grpc.StatusCode, GRPC_CODES.get(status, "INTERNAL")), message)

        return refused

    class TokenInterceptor(aio.ServerInterceptor):
        """Before the request is read: the repository extension is not served, and the token."""

        async def intercept_service(self, continuation, details):
            if "/Repository" in details.method:  # load / unload: not served (as on REST)
                return grpc.unary_unary_rpc_method_handler(
                    refuse(details.method, 501, "the model repository extension is not served"))
            if token is None or details.method.endswith("/ServerLive"):
                return await continuation(details)
            metadata = dict(details.invocation_metadata or ())
            if hmac.compare_digest(str(metadata.get("authorization", "")).encode(), f"Bearer {token}".encode()):
                return await continuation(details)
            return grpc.unary_unary_rpc_method_handler(
                refuse(details.method, 401, "missing or wrong bearer token (metadata authorization: Bearer TOKEN)"))

    calls = ByteBudget(limits.grpc_calls)

    class Admission(aio.ServerInterceptor):
        """An inference call is let in while fewer than limits.grpc_calls are under way (it waits
        up to --timeout-s, then UNAVAILABLE), and its message must then arrive within
        --read-timeout-s (else DEADLINE_EXCEEDED, and its place is freed). gRPC's core reads a
        whole message before a handler sees it, so bodies are bounded by count: calls x
        --max-body-mb <= --max-inflight-mb. The call is served as client-streaming (the same
        bytes on the wire) so that gen, not the core, reads its message."""

        async def intercept_service(self, continuation, details):
            handler = await continuation(details)
            if handler is None or not details.method.endswith("/ModelInfer"):
                return handler
            answer = handler.unary_unary

            async def admitted(requests, context):
                if not await calls.acquire(1, limits.timeout_s):
                    await refuse(details.method, 503, f"busy: {calls.limit} gRPC inference calls in flight "
                                                      "(--max-inflight-mb / --max-body-mb); try again")(None, context)
                try:
                    try:
                        request = await asyncio.wait_for(context.read(), limits.read_timeout_s)
                    except asyncio.TimeoutError:
                        late = f"request message not received within {limits.read_timeout_s:g} s (--read-timeout-s)"
                        await refuse(details.method, 408, late)(None, context)
                    except DecodeError:
                        request = aio.EOF
                    if request is aio.EOF:
                        await refuse(details.method, 400, "request: not one ModelInferRequest message")(None, context)
                    return await answer(request, context)
                finally:
                    calls.release(1)

            return grpc.stream_unary_rpc_method_handler(admitted, request_deserializer=handler.request_deserializer,
                                                        response_serializer=handler.response_serializer)

    class Answered(AsyncExceptionToStatusInterceptor):
        """An inference request waits for room in the bytes-in-flight budget (its message's
        size, and a sample's answer); an error is one line in the log and its status code
        (KServe's interceptor logs a traceback, and maps a 503 to INVALID_ARGUMENT)."""

        async def intercept(self, method, request, context, method_name):
            held = Held(budget)
            entered = HELD.set(held)
            try:
                if method_name.endswith("/ModelInfer") and not await held.take(request.ByteSize(), limits.timeout_s):
                    await refuse(method_name, 503, budget.busy())(request, context)
                return await super().intercept(method, request, context, method_name)
            finally:
                held.release()
                HELD.reset(entered)

        async def handle_exception(self, ex, request, context, method_name):
            if isinstance(ex, aio.AbortError):  # the call was answered already
                raise ex
            await refuse(method_name, *refusal(ex))(request, context)

    server = aio.server(ThreadPoolExecutor(max_workers=4), interceptors=(TokenInterceptor(), Admission(), Answered()),
                        options=[("grpc.max_send_message_length", limits.max_body_bytes),
                                 ("grpc.max_receive_message_length", limits.max_body_bytes)])
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(dataplane, extension),
                                                                        server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise UsageError(f"{host}:{port}: cannot listen for gRPC there (address in use or not this machine's); "
                         "choose another --grpc-port or --host")
    return server, bound


def http_protocol(read_timeout_s: float):
    """uvicorn's httptools protocol with what it lacks on an open network: a request's headers
    must arrive within `read_timeout_s` of the connection (or of their first byte; uvicorn
    would wait forever), else 408, and be at most MAX_HEADER_BYTES, else 431 (the connection
    closes); and on SIGTERM a connection whose request is on its way is answered (then closed)
    where uvicorn would close it unanswered."""
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    class Protocol(HttpToolsProtocol):
        draining = False  # SIGTERM came: answer what is on its way, then close
        reading_headers = in_body = False
        requests = 0  # requests begun on this connection
        header_bytes = 0
        timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._expect(read_timeout_s)

        def connection_lost(self, exc) -> None:
            self._expect(None)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if not self.in_body:  # (a body still arriving after an early answer, a 413, is read and dropped)
                self.header_bytes += len(data)
                if self.header_bytes > MAX_HEADER_BYTES:
                    return self._refuse(431, f"request headers over {MAX_HEADER_BYTES} bytes")
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.reading_headers, self.requests = True, self.requests + 1
            self._expect(read_timeout_s)

        def on_headers_complete(self) -> None:
            self.reading_headers, self.in_body, self.header_bytes = False, True, 0
            self._expect(None)  # the body has its own timeout (GuardMiddleware)
            super().on_headers_complete()
            if self.draining and self.cycle is not None:
                self.cycle.keep_alive = False

        def on_message_complete(self) -> None:
            self.in_body = False
            super().on_message_complete()

        def shutdown(self) -> None:
            """SIGTERM: a request under way is answered, then the connection closes (as in
            uvicorn); a new connection keeps its read timeout to send its first request (uvicorn
            would reset it unanswered); an idle keep-alive one gets DRAIN_IDLE_S."""
            self.draining = True
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.keep_alive = False
            elif self.requests and not self.reading_headers:
                self._expect(min(DRAIN_IDLE_S, read_timeout_s))

        def _expect(self, seconds: float | None) -> None:
            """Close the connection unless a request's headers are in within `seconds` (None: no deadline)."""
            if self.timer is not None:
                self.timer.cancel()
            self.timer = None if seconds is None else self.loop.call_later(seconds, self._too_slow)

        def _too_slow(self) -> None:
            self.timer = None
            if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
                return
            if self.reading_headers:  # part of a request came, and no more
                return self._refuse(408, f"request headers not received within {read_timeout_s:g} s "
                                         "(--read-timeout-s)")
            self.transport.close()

        def _refuse(self, status: int, message: str) -> None:
            """Answer before the app could (the headers are not in): one line logged, then close."""
            log_refusal(status, "request from {}:{}".format(*(self.client or ("?", "?"))), message)
            body = json.dumps({"error": message}).encode()
            self.transport.write(STATUS_LINE[status] + b"content-type: application/json\r\nconnection: close\r\n"
                                 + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            self.transport.close()

    return Protocol


def http_server(config, listener, stop_also):
    """A uvicorn server whose graceful shutdown first accepts what the kernel queued on
    `listener` (closing it would reset those connections), and stops `stop_also` (gRPC's
    graceful stop, a coroutine function) alongside."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            stopping = [asyncio.ensure_future(stop()) for stop in stop_also]
            accepted = []
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:  # BlockingIOError: none left
                    break
                connection.setblocking(False)
                accepted.append(connection)
            # The port closes right after the last accept, with no await between: only a
            # connection queued in that instant could be reset unanswered. (uvicorn's shutdown
            # closes it again, harmlessly.)
            for server in self.servers:
                server.close()
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.connect_accepted_socket(
                lambda: self.config.http_protocol_class(config=self.config, server_state=self.server_state,
                                                        app_state=self.lifespan.state), connection)
                for connection in accepted), return_exceptions=True)
            await super().shutdown(sockets=sockets)
            await asyncio.gather(*stopping)

    return Server(config)


def bind(host: str, port: int, option: str):
    """A listening TCP socket on host:port, or one line saying why not."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        raise UsageError(f"{host}:{port}: cannot listen there ({exc.strerror or exc}); choose another {option} "
                         "or --host") from None
    sock.set_inheritable(True)
    return sock


def serve(bundles: list[tuple[str, object]], host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
          limits: Limits | None = None, grace_s: float = 30.0, ready_file: Path | None = None,
          grpc_port: int | None = None, banner=None) -> None:
    """Serve `bundles` ((name, GenModel) pairs) over REST (and gRPC on `grpc_port`) until
    SIGTERM or SIGINT, then drain: both stop accepting, every request already accepted is
    answered (up to `grace_s`), then the process exits. `ready_file` receives {"http": port,
    "grpc": port} as JSON once both listen; `banner(http_port, grpc_port)` is called once both
    are bound."""
    limits = limits or Limits()
    check_token(token)
    import_kserve()
    import uvicorn
    from kserve.errors import (InferenceError, InvalidInput, ModelNotFound, ModelNotReady, ServerNotLive,
                               ServerNotReady, UnsupportedProtocol)
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.server import RESTServer

    # KServe builds its FastAPI app with ORJSONResponse, which FastAPI deprecates: a warning on
    # the first request that a user of gen can do nothing about.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated", category=Warning)
    suppressed = log_to_stderr()

    class CheckedDataPlane(DataPlane):
        def decode(self, body, headers, *args, **kwargs):
            """KServe's decoding, after the binary extension's sizes are checked; any error in
            it is the request's (a 400), not the server's."""
            try:
                if isinstance(body, bytes):
                    check_binary_body(body, (headers or {}).get("inference-header-content-length"))
                return super().decode(body, headers, *args, **kwargs)
            except UsageError as exc:
                raise InvalidInput(str(exc)) from None
            except InvalidInput:
                raise
            except KeyError as exc:
                raise InvalidInput(one_line(f"request body: field {exc} missing")) from None
            except Exception as exc:  # noqa: BLE001 - KServe's decoding of a body it did not expect
                raise InvalidInput(one_line(f"request body: {exc}")) from None

    budget = ByteBudget(limits.max_inflight_bytes)
    repository = ModelRepository()
    for model in build_models(bundles, limits):
        repository.update(model)
    dataplane = CheckedDataPlane(model_registry=repository)
    extension = ModelRepositoryExtension(model_registry=repository)
    rest = RESTServer("kserve.model_server:app", dataplane, extension, port, grace_period=int(grace_s))
    rest.create_application()
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve.model_server import app
    from starlette.exceptions import HTTPException

    async def refused(request, exc):  # every error's own status, one line in the log, no traceback
        exc = request.scope.get("state", {}).get("gen_refused") or exc  # FastAPI's 400 for gen's refusal
        status, message = refusal(exc)
        log_refusal(status, f"{request.method} {request.url.path}", message)
        headers = dict(getattr(exc, "headers", None) or {}) if isinstance(exc, HTTPException) else {}
        headers.update((k.decode(), v.decode()) for k, v in (exc.headers if isinstance(exc, Refused) else []))
        return JSONResponse(status_code=status, content={"error": message}, headers=headers or None)

    for error in (HTTPException, RequestValidationError, InvalidInput, InferenceError, ModelNotFound, ModelNotReady,
                  NotImplementedError, UnsupportedProtocol, ServerNotLive, ServerNotReady, Exception):
        app.add_exception_handler(error, refused)
    pages.add_pages(app, bundles, token, limits.max_body_bytes)
    app.add_middleware(GuardMiddleware, token=token, limits=limits, budget=budget)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, timeout_graceful_shutdown=grace_s,
                            access_log=False, lifespan="on", http=http_protocol(limits.read_timeout_s))
    listener = bind(host, port, "--port")  # bound here, so a busy port is one line, not uvicorn's exit 3

    async def main() -> None:
        rpc, rpc_port = None, None
        if grpc_port is not None:
            rpc, rpc_port = grpc_server(dataplane, extension, host, grpc_port, token, limits, budget)
            await rpc.start()
        server = http_server(config, listener, [lambda: rpc.stop(grace=grace_s)] if rpc is not None else [])
        if banner is not None:
            banner(listener.getsockname()[1], rpc_port)
        if ready_file is not None:
            _announce_when_started(server, ready_file, rpc_port)
        try:
            await server.serve(sockets=[listener])  # returns once SIGTERM / SIGINT has drained REST and gRPC
        finally:
            if rpc is not None:
                await rpc.stop(grace=None)  # stopped already, unless REST failed to start
            dropped, suppressed.dropped = suppressed.dropped, 0
            if dropped:
                LOG.warning("%d log lines suppressed (at most %d every %g s)", dropped, LOG_LINES, LOG_WINDOW_S,
                            extra={"unlimited": True})

    # uvicorn handles SIGTERM / SIGINT itself (stop accepting, drain, exit) and re-raises the
    # signal to the handler it found; a drained server ends normally, so that one does nothing.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    asyncio.run(main())


def _announce_when_started(server, ready_file: Path, grpc_port: int | None) -> None:
    """Write `ready_file` ({"http": port, "grpc": port or null}) once uvicorn listens: tests
    and scripts wait on it (with --port 0 it is how they learn the port)."""
    original = server.startup

    async def startup(sockets=None):
        await original(sockets=sockets)
        port = server.servers[0].sockets[0].getsockname()[1] if server.servers else server.config.port
        tmp = ready_file.with_name(ready_file.name + ".tmp")
        tmp.write_text(json.dumps({"http": port, "grpc": grpc_port}))
        tmp.replace(ready_file)

    server.startup = startup
