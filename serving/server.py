"""`gen serve`: bundles served on the Open Inference Protocol by KServe's model server.

KServe's pieces are used as they are (its DataPlane, model repository, v2 REST endpoints, error
handlers, Prometheus /metrics); gen adds what its ModelServer does not offer: the bind address
(KServe listens on 0.0.0.0; gen on 127.0.0.1 unless told), a bearer token on every route but
liveness, a request body limit, a quiet one-line 400 for bad input, adaptive batching per model
(AdaptiveBatcher) and uvicorn's graceful shutdown on SIGTERM (in-flight requests finish, new
connections are refused, then the process exits).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gen.runtime.errors import GenError, MissingDependency, UsageError

from .batching import AdaptiveBatcher
from .verbs import ROW_VERBS, completion_rows, rows_of, run_rows, sample_options, served_verbs, signature

OPEN_ROUTES = ("/v2/health/live", "/")  # answered without the token (liveness probes)
# KServe's app also mounts the model repository extension (load / unload a model) and the v1
# protocol; gen serves a fixed set of bundles on v2 only, so those answer 404.
CLOSED_PREFIXES = ("/v2/repository", "/v1/", "/docs", "/redoc", "/openapi.json")


@dataclass
class Limits:
    max_batch: int = 4096          # rows gathered into one call
    max_delay_ms: float = 5.0      # how long the first request of a batch waits for others
    max_request_rows: int = 65536  # rows (or samples) one request may ask for
    max_body_bytes: int = 64 << 20
    timeout_s: float = 30.0        # a request waiting longer is answered 503


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
                    try:
                        inputs[tensor.name] = tensor.as_numpy()
                    except Exception as exc:  # KServe's own checks of the tensor's data
                        raise UsageError(f"input {tensor.name!r}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}") from None
                outputs = await asyncio.wait_for(self._execute(inputs, dict(payload.parameters or {})),
                                                 limits.timeout_s)
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
                # KServe's to_grpc() tests `output.data and ...`, which fails on an array of more
                # than one value; its list form (or raw bytes) goes through.
                for output in infer_outputs:
                    output.set_data_from_numpy(output.data, binary_data=False)
            return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=infer_outputs,
                                 use_binary_outputs=payload.use_binary_outputs,
                                 requested_outputs=payload.request_outputs)

        async def _execute(self, inputs: dict, parameters: dict) -> dict:
            if self.verb == "sample":
                n, seed = sample_options(inputs, parameters, limits.max_request_rows,
                                         int(np.prod(self.model.shape)), limits.max_body_bytes)
                loop = asyncio.get_running_loop()
                samples = await loop.run_in_executor(None, lambda: self.model.sample(n, seed=seed))
                return {"samples": np.ascontiguousarray(samples, dtype=np.float32)}
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


def _datatype(value: np.ndarray) -> str:
    return {"f": {4: "FP32", 8: "FP64", 2: "FP16"}, "b": {1: "BOOL"},
            "i": {1: "INT8", 2: "INT16", 4: "INT32", 8: "INT64"},
            "u": {1: "UINT8", 2: "UINT16", 4: "UINT32", 8: "UINT64"}}[value.dtype.kind][value.dtype.itemsize]


class GuardMiddleware:
    """ASGI middleware: the bearer token on every route but liveness, and the body limit (by
    Content-Length, and by counting the bytes of a body sent without one)."""

    def __init__(self, app, token: str | None, max_body: int):
        self.app, self.token, self.max_body = app, token, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        if any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in CLOSED_PREFIXES):
            return await _reply(send, 404, f"{path}: not served (gen serve answers the Open Inference Protocol v2)")
        if self.token is not None and scope.get("path", "") not in OPEN_ROUTES:
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return await _reply(send, 401, "missing or wrong bearer token (Authorization: Bearer TOKEN)",
                                    [(b"www-authenticate", b"Bearer")])
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return await _reply(send, 413, f"request body of {int(length)} bytes is over the limit of "
                                           f"{self.max_body} (--max-body-mb)")
        if scope.get("path", "").endswith("/infer") and "inference-header-content-length" not in headers \
                and headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # The protocol: a body without the binary extension's header is JSON, whatever its
            # content type (tritonclient sends none); KServe would read it as binary.
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
                     + [(b"content-type", b"application/json")]}
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    # FastAPI turns an error while reading the body into its own 400; the flag
                    # lets the HTTPException handler answer 413 instead (see serve()).
                    scope.setdefault("state", {})["gen_body_too_large"] = self.max_body
                    raise BodyTooLarge()
            return message

        try:
            return await self.app(scope, counted, send)
        except BodyTooLarge:
            return await _reply(send, 413, f"request body is over the limit of {self.max_body} bytes")


class BodyTooLarge(Exception):
    pass


async def _reply(send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def grpc_server(dataplane, extension, host: str, port: int, token: str | None, limits: Limits):
    """KServe's gRPC inference servicer (the protocol's GRPCInferenceService) on a grpc.aio
    server bound to `host` (KServe's own binds every interface and has no token), behind the
    same bearer token. Returns (server, bound port); not started."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from grpc import aio
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
    from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
    from kserve.protocol.grpc.servicer import InferenceServicer

    class TokenInterceptor(aio.ServerInterceptor):
        async def intercept_service(self, continuation, details):
            if "/Repository" in details.method:  # load / unload: not served (as on REST)
                async def closed(request, context):
                    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the model repository extension is not served")

                return grpc.unary_unary_rpc_method_handler(closed)
            if token is None or details.method.endswith("/ServerLive"):
                return await continuation(details)
            metadata = dict(details.invocation_metadata or ())
            if hmac.compare_digest(str(metadata.get("authorization", "")).encode(), f"Bearer {token}".encode()):
                return await continuation(details)

            async def deny(request, context):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                    "missing or wrong bearer token (metadata authorization: Bearer TOKEN)")

            return grpc.unary_unary_rpc_method_handler(deny)

    server = aio.server(ThreadPoolExecutor(max_workers=4),
                        interceptors=(TokenInterceptor(), ExceptionToStatusInterceptor()),
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
    SIGTERM or SIGINT, then drain: requests in flight finish (up to `grace_s`), new
    connections are refused. `ready_file` receives {"http": port, "grpc": port} as JSON once
    both listen; `banner(http_port, grpc_port)` is called once both are bound."""
    limits = limits or Limits()
    import_kserve()
    import uvicorn
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from kserve.errors import InferenceError, InvalidInput
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.server import RESTServer

    logging.getLogger("kserve").setLevel(logging.WARNING)
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    repository = ModelRepository()
    for model in build_models(bundles, limits):
        repository.update(model)
    dataplane = DataPlane(model_registry=repository)
    extension = ModelRepositoryExtension(model_registry=repository)
    rest = RESTServer("kserve.model_server:app", dataplane, extension, port, grace_period=int(grace_s))
    rest.create_application()
    from kserve.model_server import app

    async def quiet_invalid_input(_, exc):  # one line, no traceback in the server's log
        logging.getLogger("gen.serve").warning("400: %s", exc)
        return JSONResponse(status_code=400, content={"error": str(exc)})

    async def bad_request_body(_, exc):  # FastAPI's 422 for a body that is not the protocol's JSON
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        message = f"request {where}: {first.get('msg', 'not a valid inference request')}"
        logging.getLogger("gen.serve").warning("400: %s", message)
        return JSONResponse(status_code=400, content={"error": message})

    async def inference_error(_, exc):  # KServe answers 500 whatever the error's status
        status = int(getattr(exc, "status", None) or 500)
        logging.getLogger("gen.serve").warning("%d: %s", status, exc.reason if hasattr(exc, "reason") else exc)
        return JSONResponse(status_code=status, content={"error": getattr(exc, "reason", str(exc))})

    async def http_error(request, exc):  # the protocol's {"error": ...} for FastAPI's own HTTP errors
        limit = request.scope.get("state", {}).get("gen_body_too_large")
        if limit:
            return JSONResponse(status_code=413, content={"error": f"request body is over the limit of {limit} "
                                                                   "bytes (--max-body-mb)"})
        return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)},
                            headers=getattr(exc, "headers", None))

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(InvalidInput, quiet_invalid_input)
    app.add_exception_handler(InferenceError, inference_error)
    app.add_exception_handler(RequestValidationError, bad_request_body)
    app.add_middleware(GuardMiddleware, token=token, max_body=limits.max_body_bytes)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, timeout_graceful_shutdown=grace_s,
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    listener = bind(host, port, "--port")  # bound here, so a busy port is one line, not uvicorn's exit 3

    async def main() -> None:
        rpc, rpc_port = None, None
        if grpc_port is not None:
            rpc, rpc_port = grpc_server(dataplane, extension, host, grpc_port, token, limits)
            await rpc.start()
        if banner is not None:
            banner(listener.getsockname()[1], rpc_port)
        if ready_file is not None:
            _announce_when_started(server, ready_file, rpc_port)
        try:
            await server.serve(sockets=[listener])  # returns once SIGTERM / SIGINT has drained REST
        finally:
            if rpc is not None:
                await rpc.stop(grace=grace_s)

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
