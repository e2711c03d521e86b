"""Runtime performance for bench/run.py (section `performance`, issue 11), on this machine's CPU
(and CUDA where onnxruntime and torch see one).

On one trained autoencoder (MNIST-5k rows, 784 inputs, default layers, normal class 0; digits
when MNIST-5k is absent), the same weights served four ways (and gen's int8 export of them), each in its own process so thread pools do not
interfere: gen's public API (`load(...).score(x)`), torch eager on the exported module (the
network with its preprocessing, as exported; host float32 rows in, scores back to the host),
torch.compile of it where it compiles, at batch 1, 256, 4,096 and 65,536 rows. Also: `gen score`
on 20k- and 200k-row NPY files (rows/s with start-up, peak RSS), samples/s of `sample` for a
VAE decoder, a DCGAN generator and an RBM Gibbs chain, the score graph's achieved GFLOP/s
against numpy's SGEMM in the same run, the cold start of `gen sample --n 64` against `import
torch`, and the installed size of a runtime-only environment (`pip install gen[cpu]`).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BATCHES = (1, 256, 4096, 65536)
MIN_SECONDS = 1.0  # each batch size is timed for at least this long (and 3 calls)
REPO = Path(__file__).resolve().parents[1]

WORKER = r'''
import json, os, sys, time
import numpy as np
mode, run, bundle, data, batches, min_s = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]), float(sys.argv[6])
device = sys.argv[7] if len(sys.argv) > 7 else "cpu"
rows = np.load(data)
stager = None
if mode.startswith("gen"):
    # "gen[-uint8|-int8|-fp16][:option=value,...]": `staging=0` loads without the stager (gen's CUDA
    # path before issue 27); an upper-case option sets that constant of gen.runtime.staging (ablations)
    from gen.runtime import load, staging
    mode, _, opts = mode.partition(":")
    kwargs = {}
    for opt in filter(None, opts.split(",")):
        key, value = opt.split("=")
        if key in ("staging", "io_binding"):
            kwargs[key] = bool(int(value))
        else:
            setattr(staging, key, int(value))
    model = load(bundle + {"gen-int8": "-int8", "gen-fp16": "-fp16"}.get(mode, ""), device=device, **kwargs)
    call = model.score
    stager = model.stager
elif mode == "ort-plain":  # onnxruntime alone: InferenceSession.run on host arrays, no gen code
    import onnxruntime as ort
    shape = json.load(open(os.path.join(bundle, "manifest.json")))["data"]["shape"]
    session = ort.InferenceSession(os.path.join(bundle, "score.onnx"), providers=(
        ["CUDAExecutionProvider"] if device == "cuda" else []) + ["CPUExecutionProvider"])
    call = lambda x: session.run(["score"], {"x": x.reshape(len(x), *shape)})[0]
elif mode.startswith("ort-"):
    # onnxruntime alone through IOBinding, the ways issue 11 lists for the GPU, so that one device
    # call says which are worth building into gen: bound per batch (gen's path today), device
    # buffers allocated once and refilled in place, the same under a CUDA graph, and the input
    # already on the device (compute only, the ceiling). Host rows in and scores back on the host
    # in all but the last.
    import onnxruntime as ort
    shape = json.load(open(os.path.join(bundle, "manifest.json")))["data"]["shape"]
    if mode == "ort-cuda-graph" and device != "cuda":
        raise SystemExit("CUDA graphs need the CUDA provider")
    cuda = [("CUDAExecutionProvider", {"enable_cuda_graph": "1"} if mode == "ort-cuda-graph" else {})]
    session = ort.InferenceSession(os.path.join(bundle, "score.onnx"),
                                   providers=(cuda if device == "cuda" else []) + ["CPUExecutionProvider"])
    buffers = {}
    def call(x):
        x = x.reshape(len(x), *shape)
        binding = buffers.get(len(x))
        if mode == "ort-bound" or binding is None:
            binding = session.io_binding()
            if mode == "ort-bound":
                binding.bind_cpu_input("x", x)
                binding.bind_output("score", device)
                session.run_with_iobinding(binding)
                return binding.copy_outputs_to_cpu()[0]
            source = ort.OrtValue.ortvalue_from_numpy(x, device, 0)
            probe = session.io_binding()  # one uncaptured run (graph id -1) for the output's shape
            probe.bind_ortvalue_input("x", source)
            probe.bind_output("score", device)
            uncaptured = None
            if mode == "ort-cuda-graph":
                uncaptured = ort.RunOptions()
                uncaptured.add_run_config_entry("gpu_graph_id", "-1")
            session.run_with_iobinding(probe, uncaptured)
            score = ort.OrtValue.ortvalue_from_shape_and_type(probe.get_outputs()[0].shape(), np.float32, device, 0)
            binding.bind_ortvalue_input("x", source)
            binding.bind_ortvalue_output("score", score)
            options = None
            if mode == "ort-cuda-graph":  # one captured graph per batch shape (ids from 1; 0 is onnxruntime's)
                options = ort.RunOptions()
                options.add_run_config_entry("gpu_graph_id", str(len(buffers) + 1))
            binding.values = (source, score, options)
            buffers[len(x)] = binding
        source, score, options = binding.values
        if mode != "ort-on-device":
            source.update_inplace(x)  # host -> the same device buffer
        session.run_with_iobinding(binding, options)
        return score if mode == "ort-on-device" else score.numpy()
else:
    import torch
    torch.set_num_threads(os.cpu_count())
    from gen.trainer.refine import with_tuned_discriminator
    from gen.trainer.run_folder import load_run
    from gen.trainer.graphs import RawUnits
    loaded = load_run(run)
    spec = loaded.data
    graph = with_tuned_discriminator(loaded.cfg.family, loaded.net, None, spec)["score"]
    module = RawUnits(graph, spec.preprocessing, spec.shape).eval()
    module = module.to(device)
    if mode == "torch-compile":
        module = torch.compile(module)
    def call(x):  # host rows in, scores back on the host (.cpu() waits for the device)
        with torch.inference_mode():
            out = module(torch.from_numpy(x).to(device).reshape(len(x), *spec.shape))
        return (out[0] if isinstance(out, tuple) else out).cpu().numpy()
result = {}
for b in batches:
    x = np.ascontiguousarray(np.resize(rows, (b, rows.shape[1])), dtype=np.uint8 if mode == "gen-uint8" else np.float32)
    first = call(x)  # warm-up (and, for torch.compile, compilation)
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < min_s:
        call(x)
        n += 1
    result[b] = {"rows_per_s": b * n / (time.perf_counter() - start), "calls": n, "check": float(np.asarray(first.numpy() if hasattr(first, "numpy") else first, dtype=np.float64).sum())}
if stager is not None and stager.kind is not None:
    result["host_buffers"] = stager.kind  # pinned by onnxruntime or cudart, or pageable
print(json.dumps(result))
'''


# onnxruntime's CPU session options, measured on the score graph (plain session.run, host arrays):
# the defaults gen keeps against the alternatives, at batch 1 and 4,096; and the session's load
# time from the bundle's graph and from an optimised copy saved by a first load.
OPTIONS_WORKER = r'''
import json, os, sys, tempfile, time
import numpy as np
import onnxruntime as ort
graph, data, min_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
rows = np.load(data)
shape = json.load(open(os.path.join(os.path.dirname(graph), "manifest.json")))["data"]["shape"]
L = ort.GraphOptimizationLevel
configs = {"defaults (threads = cores, spinning, all optimisations)": {},
           "1 intra-op thread": {"threads": 1}, "spinning off": {"spin": "0"},
           "basic optimisations only": {"level": L.ORT_ENABLE_BASIC}, "no optimisations": {"level": L.ORT_DISABLE_ALL}}
def options(threads=None, spin=None, level=None, save=None):
    o = ort.SessionOptions()
    o.log_severity_level = 3  # not the warning that an optimised copy is hardware-specific (it is)
    if threads: o.intra_op_num_threads = threads
    if spin: o.add_session_config_entry("session.intra_op.allow_spinning", spin)
    if level is not None: o.graph_optimization_level = level
    if save: o.optimized_model_filepath = save
    return o
result = {}
for name, c in configs.items():
    s = ort.InferenceSession(graph, options(**c), providers=["CPUExecutionProvider"])
    result[name] = {}
    for b in (1, 4096):
        x = np.ascontiguousarray(np.resize(rows, (b, rows.shape[1])), dtype=np.float32).reshape(b, *shape)
        s.run(None, {"x": x})
        n, start = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - start < min_s:
            s.run(None, {"x": x}); n += 1
        result[name][b] = b * n / (time.perf_counter() - start)
def load_ms(path, o):
    times = []
    for _ in range(7):
        t = time.perf_counter(); ort.InferenceSession(path, o, providers=["CPUExecutionProvider"]); times.append(time.perf_counter() - t)
    return sorted(times)[3] * 1000
cached = os.path.join(tempfile.mkdtemp(), "score.opt.onnx")
ort.InferenceSession(graph, options(save=cached), providers=["CPUExecutionProvider"])
loads = {"from the bundle's graph": load_ms(graph, options()),
         "from an optimised copy (optimisations off)": load_ms(cached, options(level=L.ORT_DISABLE_ALL))}
print(json.dumps({"rows_per_s": result, "load_ms": loads}))
'''


def _log(message: str) -> None:
    print(f"[bench performance] {message}", file=sys.stderr, flush=True)


def _gen() -> str:
    local = Path(sys.executable).parent / "gen"
    return str(local) if local.exists() else "gen"


def _train(gen: str, workdir: Path, name: str, model: str, data: str, epochs: int, extra=()) -> tuple[Path, Path]:
    run, bundle = workdir / f"run-{name}", workdir / f"bundle-{name}"
    subprocess.run([gen, "train", "--model", model, "--data", data, "--epochs", str(epochs), "--device", "cpu",
                    "--out", str(run), *extra], check=True, capture_output=True)
    subprocess.run([gen, "export", str(run), "--out", str(bundle)], check=True, capture_output=True)
    return run, bundle


def score_graph_flops(bundle: Path) -> int:
    """Multiply-adds x 2 per row of the score graph's MatMul / Gemm nodes with a weight matrix,
    from onnx's shape inference at batch 1: a MatMul of a (rows, K) activation by a (K, N)
    weight counts rows x K x N (the error pooling's (H, W) @ (W, W) counts H of them)."""
    import onnx

    model = onnx.load(str(bundle / "score.onnx"))
    for port in model.graph.input:
        port.type.tensor_type.shape.dim[0].dim_value = 1
    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    weights = {t.name: list(t.dims) for t in graph.initializer}
    shapes = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
              for v in [*graph.value_info, *graph.input]}
    flops = 0
    for node in graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            dims = next((weights[i] for i in node.input if i in weights and len(weights[i]) == 2), None)
            if dims is None:
                continue
            other = next((shapes.get(i) for i in node.input[:2] if i not in weights), None)
            rows = 1
            for d in (other or [1])[:-1]:
                rows *= d
            flops += 2 * rows * dims[0] * dims[1]
    return flops


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    b = np.random.default_rng(1).normal(size=(n, n)).astype(np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _peak(command: list[str]) -> tuple[float, float]:
    script = ("import resource, subprocess, sys, time\nt = time.perf_counter()\n"
              "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, time.perf_counter() - t)\n")
    out = subprocess.run([sys.executable, "-c", script, *command], check=True, capture_output=True, text=True)
    rss, wall = out.stdout.split()
    return float(rss), float(wall)


def installed_size(workdir: Path) -> dict:
    """A fresh venv with `pip install gen[cpu]` from this checkout: site-packages size, and
    whether torch came with it."""
    env = workdir / "runtime-env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, capture_output=True)
    pip = env / "bin" / "pip"
    subprocess.run([str(pip), "install", "--quiet", f"{REPO}[cpu]"], check=True, capture_output=True)
    site = next((env / "lib").glob("python*/site-packages"))
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    return {"mib": size / 2**20, "torch": (site / "torch").exists(),
            "packages": sorted(p.name.split("-")[0] for p in site.glob("*.dist-info"))}


def byte_compile_gen() -> None:
    """Write the bytecode of gen's own modules, as `pip install gen` does at install time (torch's
    wheel ships compiled the same way). Without it an editable install under
    PYTHONDONTWRITEBYTECODE compiles about 30 modules from source on every command (~30 ms)."""
    import compileall

    for folder in ("runtime", "cli", "trainer", "exporters", "pipelines", "serving"):
        compileall.compile_dir(str(REPO / folder), quiet=1)


def _alternatives(modes, run: Path, bundle: Path, rows_file: Path, batches, quick: bool, device: str) -> dict:
    """rows/s per batch size of each mode, each in its own process, on `device`."""
    found = {}
    for mode in modes:
        start = time.perf_counter()
        try:
            out = subprocess.run([sys.executable, "-c", WORKER, mode, str(run), str(bundle), str(rows_file),
                                  json.dumps(batches), str(0.3 if quick else MIN_SECONDS), device],
                                 capture_output=True, text=True, timeout=900)
            if out.returncode != 0:
                raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed")
            found[mode] = {(int(k) if k.isdigit() else k): v for k, v in json.loads(out.stdout).items()}
            _log(f"{mode} on {device}: " + ", ".join(f"batch {b} {v['rows_per_s']:,.0f} rows/s"
                                                     for b, v in found[mode].items() if isinstance(b, int))
                 + f" ({time.perf_counter() - start:.0f} s)")
        except Exception as exc:  # torch.compile needs a C++ compiler; say what happened
            found[mode] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            _log(f"{mode} on {device}: did not run ({found[mode]['error']})")
    return found


def repeats(run: Path, bundle: Path, rows_file: Path, quick: bool, rounds: int = 5) -> dict:
    """gen and torch eager at batch 1 and 4,096 in `rounds` alternating pairs of fresh processes:
    the ratio the targets are judged on moves by several percent from one process to the next
    (CPU frequency, memory placement), so the report gives the median and the range."""
    found = {"gen": {1: [], 4096: []}, "torch-eager": {1: [], 4096: []}}
    for _ in range(2 if quick else rounds):
        for mode in found:
            got = _alternatives([mode], run, bundle, rows_file, [1, 4096], quick, "cpu").get(mode, {})
            for b in (1, 4096):
                if isinstance(got.get(b), dict):
                    found[mode][b].append(got[b]["rows_per_s"])
    return found


FILE_WORKER = r"""
import json, sys, time
import numpy as np
from gen.runtime import load
mode, bundle, path, out = sys.argv[1:5]
model = load(bundle, device="cpu")
x = np.load(path, mmap_mode="r")
start = time.perf_counter()
if mode == "in-process":  # the API on the same rows, read from the same file chunk by chunk
    for i in range(0, len(x), 4096):
        model.score(np.asarray(x[i:i + 4096]))
else:
    model.score_file(path, out, pipelined=mode == "pipelined", warn_drift=False)
print(json.dumps({"rows_per_s": len(x) / (time.perf_counter() - start)}))
"""
FILE_MODES = ("in-process", "serial", "pipelined")


def taking_turns(worker: str, modes: tuple[str, ...], args: list[str], rounds: int, label: str) -> dict:
    """rows/s of `worker` (a script printing {"rows_per_s": ...}) run as `worker MODE *args`,
    each mode in a fresh process, in `rounds` rounds taking turns; {mode: [rows/s per round]}."""
    found: dict = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode in modes:
            done = subprocess.run([sys.executable, "-c", worker, mode, *args],
                                  capture_output=True, text=True, timeout=900, check=True)
            found[mode].append(json.loads(done.stdout)["rows_per_s"])
    _log(f"{label}, rows/s after load (median): " + ", ".join(
        f"{mode} {statistics.median(v):,.0f}" for mode, v in found.items()))
    return found


def file_path_rates(bundle: Path, path: Path, out: Path, rounds: int) -> dict:
    """rows/s of scoring the file `path` after load, three ways, in `rounds` rounds of fresh
    processes taking turns: `model.score` on 4,096-row chunks of it (in-process), and
    `score_file` (what `gen score` runs) serial and pipelined. Start-up is not counted."""
    return taking_turns(FILE_WORKER, FILE_MODES, [str(bundle), str(path), str(out)], rounds, "file path")


CSV_WORKER = r"""
import json, sys, time
if sys.argv[1] == "python":  # a runtime without pyarrow: Python's csv module reads the file
    sys.modules["pyarrow.csv"] = None
from gen.runtime import load
model = load(sys.argv[2], device="cpu")
start = time.perf_counter()
n = model.score_file(sys.argv[3], sys.argv[4], warn_drift=False)
print(json.dumps({"rows_per_s": n / (time.perf_counter() - start)}))
"""
CSV_MODES = ("pyarrow", "python")


def csv_path_rates(bundle: Path, path: Path, out: Path, rounds: int) -> dict:
    """rows/s of `score_file` on the CSV file `path` after load, its CSV parsed by pyarrow (as
    gen does where pyarrow is installed) and by Python's csv module (a runtime without it), in
    `rounds` rounds of fresh processes taking turns."""
    return taking_turns(CSV_WORKER, CSV_MODES, [str(bundle), str(path), str(out)], rounds, "CSV file")


def cuda_device() -> str | None:
    """The GPU's name when both onnxruntime (CUDA provider) and torch see one, else None."""
    try:
        import onnxruntime
        import torch

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers() and torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # no GPU stack here
        return None
    return None


def cuda_record(gpu: str, workdir: Path, run: Path, bundle: Path, rows_file: Path, batches, quick: bool,
                uint8: bool, device: str = "cuda", modes=None, files: bool = True) -> dict:
    """The GPU rows of issue 11 on device `gpu`: rows/s of gen (float32 and uint8 rows, the fp16
    bundle), onnxruntime alone and torch eager, host rows in and scores back on the host; and
    `gen score --device cuda` of a 1M-row NPY file, float32 and as uint8 pixels. (`device` "cpu"
    runs the same steps on the CPU: a dry run of the script where no GPU is lent.)"""
    modes = [m for m in (modes or ("gen", "gen-uint8", "gen-fp16", "ort-plain", "ort-bound", "ort-prealloc",
                                   "ort-cuda-graph", "ort-on-device", "torch-eager"))
             if uint8 or not m.startswith("gen-uint8")]
    record = {"device": gpu, "alternatives": _alternatives(modes, run, bundle, rows_file, batches, quick, device),
              "files": {}}
    rows = np.load(rows_file)
    n = 65_536 if quick else 1_048_576
    for dtype in (("float32", "uint8") if uint8 else ("float32",)) if files else ():
        path = workdir / f"rows-{n}-{dtype}.npy"
        np.save(path, np.resize(rows, (n, rows.shape[1])).astype(dtype))
        for chunk in (4096, 65536):  # the default --chunk-rows, and bigger chunks for the GPU
            rss, wall = _peak([_gen(), "score", str(bundle), str(path), "--out", str(workdir / "s-gpu.npy"),
                               "--device", device, "--chunk-rows", str(chunk)])
            key = f"{n}-{dtype}" + ("" if chunk == 4096 else f"-chunk{chunk}")
            record["files"][key] = {"peak_rss_mib": rss, "wall_s": wall, "rows_per_s": n / wall, "dtype": dtype,
                                    "chunk_rows": chunk}
            _log(f"gen score {n:,} {dtype} rows on {device}, --chunk-rows {chunk}: {n / wall:,.0f} rows/s with "
                 f"start-up, peak RSS {rss:.0f} MiB")
        path.unlink()
    return record


def perf_benchmark(workdir: Path, mnist: Path | None, quick: bool = False) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    gen = _gen()
    batches = (1, 256, 4096) if quick else BATCHES
    data_spec, label = (str(mnist), "MNIST-5k") if mnist is not None else ("digits", "sklearn digits")
    run, bundle = _train(gen, workdir, "ae", "ae", data_spec, 2 if quick else 5, ("--normal-class", "0"))
    for suffix, flag in (("int8", ["--quantize", "int8"]), ("fp16", ["--precision", "fp16"])):
        subprocess.run([gen, "export", str(run), "--out", f"{bundle}-{suffix}", *flag, "--json"], check=True,
                       capture_output=True)
    from gen.runtime import load
    from gen.runtime.readers import read_idx

    model = load(bundle, device="cpu")
    if mnist is not None:
        rows = read_idx(mnist).reshape(-1, int(np.prod(model.shape))).astype(np.float32)
    else:
        from sklearn.datasets import load_digits

        rows = load_digits().data.astype(np.float32)
    rows_file = workdir / "rows.npy"
    np.save(rows_file, rows)
    record: dict = {"data": label, "features": int(rows.shape[1]), "batches": list(batches),
                    "threads": os.cpu_count(), "alternatives": {}}
    modes = ("gen", "gen-uint8", "gen-int8", "gen-fp16", "torch-eager", "torch-compile")
    record["alternatives"] = _alternatives([m for m in modes if mnist is not None or m != "gen-uint8"], run, bundle,
                                           rows_file, batches, quick, "cpu")
    record["repeats"] = repeats(run, bundle, rows_file, quick)
    try:
        out = subprocess.run([sys.executable, "-c", OPTIONS_WORKER, str(bundle / "score.onnx"), str(rows_file),
                              str(0.3 if quick else MIN_SECONDS)], capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed")
        record["session_options"] = json.loads(out.stdout)
        _log(f"session options: {record['session_options']}")
    except Exception as exc:
        record["session_options"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    record["quantization"] = load(f"{bundle}-int8", device="cpu").manifest.quantization.__dict__
    record["fp16"] = load(f"{bundle}-fp16", device="cpu").manifest.quantization.__dict__
    record["flops_per_row"] = score_graph_flops(bundle)
    record["sgemm_gflops"] = sgemm_gflops()
    _log(f"score graph {record['flops_per_row']:,} FLOP/row; numpy SGEMM {record['sgemm_gflops']:.1f} GFLOP/s")

    files = {}
    # MNIST's pixels are bytes: the 200k-row file is also scored as the uint8 NPY it would be stored as
    kinds = [(20_000, "float32"), (200_000, "float32")] + ([(200_000, "uint8")] if mnist is not None else [])
    for n, dtype in kinds:
        path = workdir / f"rows-{n}-{dtype}.npy"
        np.save(path, np.resize(rows, (n, rows.shape[1])).astype(dtype))
        rss, wall = _peak([gen, "score", str(bundle), str(path), "--out", str(workdir / f"s-{n}.npy"),
                           "--device", "cpu"])
        files[n if dtype == "float32" else f"{n}-{dtype}"] = {"peak_rss_mib": rss, "wall_s": wall,
                                                               "rows_per_s": n / wall, "dtype": dtype}
        if n == 200_000 and dtype == "float32":
            record["file_path"] = {"rows": n, "dtype": dtype,
                                   "rates": file_path_rates(bundle, path, workdir / "s-file.npy", 2 if quick else 5)}
        path.unlink()
        _log(f"gen score {n:,} {dtype} rows: {n / wall:,.0f} rows/s with start-up, peak RSS {rss:.0f} MiB")
    record["gen_score_files"] = files
    csv_rows = 2_000 if quick else 20_000
    csv_file = workdir / f"rows-{csv_rows}.csv"
    np.savetxt(csv_file, np.resize(rows, (csv_rows, rows.shape[1])), delimiter=",", fmt="%.9g")
    record["csv_path"] = {"rows": csv_rows, "features": int(rows.shape[1]),
                          "rates": csv_path_rates(bundle, csv_file, workdir / "s-csv.npy", 2 if quick else 3)}
    csv_file.unlink()
    gpu = cuda_device()
    if gpu is not None:
        record["cuda"] = cuda_record(gpu, workdir, run, bundle, rows_file, batches, quick, uint8=mnist is not None)

    samplers = {}
    for name, family, extra in (("vae", "vae", ()), ("dcgan", "dcgan", ()), ("rbm", "rbm", ())):
        try:
            _, b = _train(gen, workdir, name, family, "digits", 2)
            m = load(b, device="cpu")
            m.sample(64, seed=0)
            n = 4096 if family != "rbm" else 1024
            t = min(_timed(lambda: m.sample(n, seed=1)) for _ in range(3))
            steps = m.manifest.sampler.steps if family == "rbm" else None
            samplers[name] = {"n": n, "samples_per_s": n / t, "gibbs_steps": steps}
            _log(f"sample {name}: {n / t:,.0f} samples/s" + (f" ({steps} Gibbs steps each)" if steps else ""))
        except Exception as exc:
            samplers[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    record["sampling"] = samplers

    png = workdir / "cold.png"
    byte_compile_gen()
    gen_times = [_timed(lambda: subprocess.run([gen, "sample", str(bundle), "--n", "64", "--out", str(png),
                                                "--device", "cpu"], check=True, capture_output=True))
                 for _ in range(5)]
    torch_times = [_timed(lambda: subprocess.run([sys.executable, "-c", "import torch"], check=True))
                   for _ in range(5)]
    record["cold_start"] = {"gen_sample_64_s": statistics.median(gen_times),
                            "import_torch_s": statistics.median(torch_times)}
    _log(f"cold start: gen sample --n 64 {statistics.median(gen_times):.2f} s, import torch "
         f"{statistics.median(torch_times):.2f} s")
    if not quick:
        try:
            record["runtime_install"] = installed_size(workdir)
            _log(f"runtime-only install: {record['runtime_install']['mib']:.0f} MiB")
        except Exception as exc:
            record["runtime_install"] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    shutil.rmtree(workdir / "runtime-env", ignore_errors=True)
    return record
