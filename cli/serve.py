"""`gen serve`: bundles on the Open Inference Protocol (gen.serving). No torch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import reported
from .options import Device, DeviceOpt, PublicKeyOpt, ThreadsOpt


def serve(
    bundles: Annotated[list[Path], typer.Argument(help="Bundle folders; each is a model named by its folder "
                                                       "(or --name), one per verb: NAME.score, NAME.sample, ...")],
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the server to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port (0: any free port).", min=0, max=65535)] = 8080,
    grpc_port: Annotated[Optional[int], typer.Option(
        help="Also serve the protocol's gRPC service on this port (0: any free port); default: REST only.",
        min=0, max=65535)] = None,
    name: Annotated[Optional[list[str]], typer.Option(
        help="Model name of each bundle, in order (default: the folder's name).")] = None,
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    max_batch: Annotated[int, typer.Option(
        help="Adaptive batching: rows gathered from concurrent requests into one onnxruntime call (0: off).",
        min=0)] = 4096,
    max_delay_ms: Annotated[float, typer.Option(
        help="Adaptive batching: how long a request waits for others to join its batch (0: off).",
        min=0.0)] = 5.0,
    max_request_rows: Annotated[int, typer.Option(help="Rows (or samples) one request may hold.", min=1)] = 65536,
    max_body_mb: Annotated[float, typer.Option(help="Request body limit in MiB (413 beyond).", min=0.001)] = 64.0,
    max_inflight_mb: Annotated[Optional[float], typer.Option(
        help="Request bytes read or answered at once, all requests together, in MiB: REST bodies as their bytes "
             "arrive, and sample answers; a request waits for room (up to --timeout-s, then 503). gRPC inference "
             "calls are let in by count: this over --max-body-mb at once. Default: twice --max-body-mb.",
        min=0.001)] = None,
    timeout_s: Annotated[float, typer.Option(
        help="A request not answered in this time (or not let in, see --max-inflight-mb) gets 503.",
        min=0.001)] = 30.0,
    read_timeout_s: Annotated[float, typer.Option(
        help="A request's headers must arrive within this many seconds, and its body may pause no longer (a gRPC "
             "call's message must arrive within it); 408 beyond.",
        min=0.001)] = 30.0,
    token: Annotated[Optional[str], typer.Option(
        envvar="GEN_SERVE_TOKEN", help="Require `Authorization: Bearer TOKEN` on every route but liveness "
                                       "(also read from $GEN_SERVE_TOKEN).")] = None,
    grace_s: Annotated[float, typer.Option(help="On SIGTERM, how long in-flight requests may take to finish.",
                                           min=0.0)] = 30.0,
    ready_file: Annotated[Optional[Path], typer.Option(
        help='Write {"http": PORT, "grpc": PORT} to this file once the server listens (scripts, tests).')] = None,
    public_key: PublicKeyOpt = None,
) -> None:
    """Serve bundles over the Open Inference Protocol (KServe's v2 REST: /v2/health/live, /v2/models/NAME,
    /v2/models/NAME/infer) with adaptive batching, until SIGTERM or Ctrl-C (in-flight requests finish)."""
    with reported():
        from gen.runtime import InputError, load
        from gen.serving.server import Limits, check_token, import_kserve, serve as run
        from gen.serving.verbs import check_name

        if token is None and "GEN_SERVE_TOKEN" in os.environ:
            token = os.environ["GEN_SERVE_TOKEN"]  # click reads an empty variable as unset: serving everyone
        check_token(token)
        names = list(name or [])
        if names and len(names) != len(bundles):
            raise InputError(f"--name: {len(names)} names for {len(bundles)} bundles; give one per bundle or none")
        for n in names:
            check_name(n)
        for b in bundles if not names else []:
            check_name(Path(b).resolve().name, "bundle folder", "; name it with --name")
        names = names or [Path(b).resolve().name for b in bundles]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise InputError(f"two bundles are both named {dup!r}; name them with --name")
        if ready_file is not None and not ready_file.parent.is_dir():
            raise InputError(f"--ready-file {ready_file}: folder {ready_file.parent} does not exist")
        limits = Limits(max_batch=max_batch, max_delay_ms=max_delay_ms, max_request_rows=max_request_rows,
                        max_body_bytes=int(max_body_mb * (1 << 20)),
                        max_inflight_bytes=int((max_inflight_mb or 2 * max_body_mb) * (1 << 20)),
                        timeout_s=timeout_s, read_timeout_s=read_timeout_s)
        import_kserve()  # a missing extra is one line before any bundle loads
        models = [(n, load(b, device=device.value, threads=threads, public_key=public_key))
                  for n, b in zip(names, bundles)]
        def banner(bound_http, bound_grpc):
            typer.echo(f"serving {', '.join(n for n, _ in models)} on http://{host}:{bound_http}"
                       + (f" and grpc {host}:{bound_grpc}" if bound_grpc is not None else "") + " "
                       f"(Open Inference Protocol v2; provider {models[0][1].provider}"
                       f"{'; bearer token required' if token else ''})", err=True)

        run(models, host=host, port=port, token=token, limits=limits, grace_s=grace_s, ready_file=ready_file,
            grpc_port=grpc_port, banner=banner)


COMMANDS = (serve,)
