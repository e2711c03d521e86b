"""Online serving for bench/run.py (section `serving`, issue 13): a bounded load test of
`gen serve` on loopback, with and without adaptive batching, next to the Python API in-process.

CLIENTS concurrent clients (asyncio tasks of tritonclient.http.aio, one process) each send
REQUESTS requests of 1..64 rows (sizes drawn from a seeded generator, the same for every
configuration) to the `score` verb of a bundle, one request at a time; the test stops by
itself. Throughput (requests/s, rows/s) and per-request latency (p50, p99) from the client's
side. The in-process row calls `model.score` on the same request sizes, one after another.
The server and the client share this machine's cores.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CLIENTS = 32
REQUESTS = 200
SCRIPT = "import sys; sys.argv[0] = 'gen'; from gen.cli.entry import main; main()"


def _log(message: str) -> None:
    print(f"[bench serving] {message}", file=sys.stderr, flush=True)


def _start(bundle: Path, workdir: Path, options: list[str]) -> tuple[subprocess.Popen, int]:
    ready = workdir / f"ready-{time.monotonic_ns()}"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, "serve", str(bundle), "--name", "m", "--port", "0",
                             "--device", "cpu", "--ready-file", str(ready), *options],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 120
    while not (ready.is_file() and ready.read_text()):
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError("gen serve did not start")
        time.sleep(0.05)
    import json

    return proc, int(json.loads(ready.read_text())["http"])


def _sizes(clients: int, requests: int) -> np.ndarray:
    return np.random.default_rng(0).integers(1, 65, size=(clients, requests))


async def _load(port: int, rows: np.ndarray, sizes: np.ndarray) -> dict:
    import tritonclient.http.aio as aio
    import tritonclient.http as http

    latencies: list[float] = []

    async def client(sizes_of_client) -> None:
        async with aio.InferenceServerClient(f"127.0.0.1:{port}", conn_limit=1) as c:
            for n in sizes_of_client:
                x = http.InferInput("x", [int(n), rows.shape[1]], "FP32")
                x.set_data_from_numpy(rows[:n])
                start = time.perf_counter()
                result = await c.infer("m.score", [x])
                latencies.append(time.perf_counter() - start)
                assert result.as_numpy("score").shape == (n,)

    start = time.perf_counter()
    await asyncio.gather(*(client(s) for s in sizes))
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"requests": len(latencies), "rows": int(sizes.sum()), "wall_s": wall,
            "requests_per_s": len(latencies) / wall, "rows_per_s": float(sizes.sum()) / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def serving_benchmark(workdir: Path, quick: bool = False) -> dict:
    """Train a small `ae` on digits (normal class 0, 20 epochs), export it, load-test it."""
    from gen.runtime import load

    workdir.mkdir(parents=True, exist_ok=True)
    gen = str(Path(sys.executable).parent / "gen")
    run, bundle = workdir / "run", workdir / "bundle"
    subprocess.run([gen, "train", "--model", "ae", "--data", "digits", "--normal-class", "0", "--epochs", "20",
                    "--device", "cpu", "--out", str(run)], check=True, capture_output=True)
    subprocess.run([gen, "export", str(run), "--out", str(bundle)], check=True, capture_output=True)
    clients, requests = (8, 50) if quick else (CLIENTS, REQUESTS)
    model = load(bundle, device="cpu")
    rows = np.random.default_rng(1).uniform(0, 16, size=(64, int(np.prod(model.shape)))).astype(np.float32)
    sizes = _sizes(clients, requests)
    configs = []
    for name, options in (("gen serve, adaptive batching (--max-batch 4096 --max-delay-ms 5)", []),
                          ("gen serve, no batching (--max-batch 0)", ["--max-batch", "0"])):
        proc, port = _start(bundle, workdir, options)
        try:
            asyncio.run(_load(port, rows, _sizes(2, 5)))  # warm-up
            record = {"name": name, "options": options, **asyncio.run(_load(port, rows, sizes))}
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        _log(f"{name}: {record['requests_per_s']:,.0f} requests/s, {record['rows_per_s']:,.0f} rows/s, "
             f"p50 {record['p50_ms']:.1f} ms, p99 {record['p99_ms']:.1f} ms")
        configs.append(record)
    latencies = []
    start = time.perf_counter()
    for n in sizes.reshape(-1):
        t = time.perf_counter()
        model.score(rows[:n])
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    configs.append({"name": "Python API in-process, one call after another", "requests": int(sizes.size),
                    "rows": int(sizes.sum()), "wall_s": wall, "requests_per_s": sizes.size / wall,
                    "rows_per_s": float(sizes.sum()) / wall, "p50_ms": float(np.percentile(lat, 50)),
                    "p99_ms": float(np.percentile(lat, 99))})
    _log(f"in-process: {configs[-1]['requests_per_s']:,.0f} calls/s")
    return {"clients": clients, "requests_per_client": requests, "rows_per_request": "1..64 (seeded)",
            "bundle": f"{model.family}, {int(np.prod(model.shape))} features", "configs": configs}
