"""The GPU rows of the `performance` section, measured on a lent GPU machine in one device call.

The GPU machine has no internet, no onnxruntime-gpu and perhaps not the whole training stack,
so the model is trained and exported here and carried there with the rows; the measurement
(bench/performance.py `cuda_record`) runs there; its JSON comes back and is merged here.

    .venv/bin/python bench/gpu_perf.py prepare --mnist PATH/mnist5k-images-idx3-ubyte.gz
        # -> .gpu-perf/ (git-ignored through .git/info/exclude): run folder, bundles, rows.npy
    # on the device (after the four onnxruntime-gpu parts of ../shared/gpu/README.md), carry
    # [".gpu-perf"], command:
    #   source bench/gpu-env.sh; python3 bench/gpu_perf.py measure .gpu-perf --out $OUT/cuda.json
    .venv/bin/python bench/gpu_perf.py merge /work/.device/.../cuda.json
        # -> bench/results.json performance.cuda, then BENCHMARKS.md re-rendered
        # --rerun OTHER.json: a later call's figures beside the main ones (another machine);
        # --rename "MEASURED->AS": a default changed after the run to a setting it measured;
        # --small-calls MODE: gen's rate at calls under staging.MIN_STAGED_BYTES taken from MODE
    # (`measure --modes "gen;gen:THREADS=4" --no-files` reruns some modes in a shorter call)
    # The record of 2026-12-04 was merged with:
    #   merge cuda.json --rename "gen->gen:DEVICE_INPUT=1" --rename "gen:DEVICE_INPUT=0->gen"
    #     --rename "gen-uint8->gen-uint8:DEVICE_INPUT=1" --rename "gen-uint8:DEVICE_INPUT=0->gen-uint8"
    #     --rerun cuda4.json --rerun cuda5.json --small-calls gen:staging=0
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import performance  # noqa: E402  (bench/ is not a package)


def prepare(mnist: Path, folder: Path) -> None:
    """Train and export the section's autoencoder (float and fp16 bundles) and save its rows."""
    import numpy as np

    from gen.runtime.readers import read_idx

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    gen = performance._gen()
    run, bundle = performance._train(gen, folder, "ae", "ae", str(mnist), 5, ("--normal-class", "0"))
    subprocess.run([gen, "export", str(run), "--out", f"{bundle}-fp16", "--precision", "fp16"], check=True,
                   capture_output=True)
    np.save(folder / "rows.npy", read_idx(mnist).reshape(5000, -1))  # uint8 pixels: a quarter of the bytes to carry
    exclude = REPO / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    if f"/{folder.name}/" not in (exclude.read_text() if exclude.exists() else ""):
        with open(exclude, "a") as f:
            f.write(f"/{folder.name}/\n")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    print(f"{folder}: {size:.1f} MiB to carry")


PROBE = r'''
import json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
device = sys.argv[1]
facts = {"cpu_count": os.cpu_count()}
try:
    facts["cpu"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except Exception as exc:
    facts["cpu"] = repr(exc)
if device == "cuda":
    try:
        facts["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,pcie.link.gen.max,"
                                              "pcie.link.width.max,memory.total", "--format=csv,noheader"],
                                             capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as exc:
        facts["nvidia_smi"] = repr(exc)
import onnxruntime as ort
facts["onnxruntime"] = ort.__version__
facts["providers"] = ort.get_available_providers()
try:
    facts["ep_devices"] = [(d.ep_name, str(d.device.type)) for d in ort.get_ep_devices()]
except Exception as exc:
    facts["ep_devices"] = repr(exc)
from gen.runtime import staging
from gen.runtime.model import load
model = load(sys.argv[2], device=device, staging=True)  # a CUDA session first: its CUDA runtime is loaded
buffer = staging.HostBuffer(64 << 20, pinned=device == "cuda")
facts["gen_host_buffer"] = buffer.kind
facts["onnxruntime_host_accessible"] = staging._onnxruntime_host_memory() is not None
facts["cudart_found"] = staging._cudart() is not None
facts["staging_threads"] = staging.THREADS
n = 65536 * 784
src = np.random.default_rng(0).random(n, dtype=np.float32)
def rate(fn, nbytes, repeats=5):
    fn()
    t = min(_t(fn) for _ in range(repeats))
    return nbytes / t / 1e9
def _t(fn):
    s = time.perf_counter(); fn(); return time.perf_counter() - s
dst = np.empty_like(src)
gbs = {"isfinite_all_1_thread": rate(lambda: np.isfinite(src).all(), src.nbytes)}
for threads in (1, 2, 4, 8, 16):
    pool = ThreadPoolExecutor(threads)
    b = np.linspace(0, n, threads + 1).astype(int)
    gbs[f"copy_{threads}_threads"] = rate(lambda: list(pool.map(lambda i: np.copyto(dst[b[i]:b[i+1]], src[b[i]:b[i+1]]), range(threads))), src.nbytes)
    rows, pinned = src.reshape(65536, 784), buffer.view(np.float32, (16384, 784))
    gbs[f"fill_check_{threads}_threads"] = rate(lambda: list(pool.map(lambda i: staging.fill(pinned[i * 16384 // threads:(i + 1) * 16384 // threads], rows[i * 16384 // threads:(i + 1) * 16384 // threads], True), range(threads))), pinned.nbytes)
    pool.shutdown()
facts["host_gb_per_s"] = gbs
if device == "cuda":
    try:
        import torch
        x = torch.from_numpy(src)
        pin = torch.empty_like(x).pin_memory()
        pin.copy_(x)
        dev = torch.empty_like(x, device="cuda")
        def h2d(t):
            def f():
                dev.copy_(t, non_blocking=False); torch.cuda.synchronize()
            return f
        back = torch.empty_like(x).pin_memory()
        def d2h():
            back.copy_(dev); torch.cuda.synchronize()
        facts["link_gb_per_s"] = {"h2d_pageable": rate(h2d(x), src.nbytes), "h2d_pinned": rate(h2d(pin), src.nbytes),
                                  "d2h_pinned": rate(d2h, src.nbytes)}
        v = ort.OrtValue.ortvalue_from_shape_and_type([n], np.float32, "cuda", 0)
        facts["link_gb_per_s"]["ort_update_inplace_pageable"] = rate(lambda: v.update_inplace(src), src.nbytes)
        staged = buffer.view(np.float32, (n // 4,))
        v4 = ort.OrtValue.ortvalue_from_shape_and_type([n // 4], np.float32, "cuda", 0)
        facts["link_gb_per_s"]["ort_update_inplace_gen_buffer"] = rate(lambda: v4.update_inplace(staged), staged.nbytes)
    except Exception as exc:
        facts["link_gb_per_s"] = repr(exc)
print(json.dumps(facts))
'''


def probe(bundle: Path, device: str) -> dict:
    """Facts of the machine the GPU figures come from: CPU, GPU and link, host copy rates by
    threads, where gen's pinned buffers come from, the link's pageable and pinned rates."""
    out = subprocess.run([sys.executable, "-c", PROBE, device, str(bundle)], capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-800:]}
    facts = json.loads(out.stdout)
    performance._log(f"probe: {facts}")
    return facts


# gen's own CUDA path and its ablations (bench/performance.py WORKER says how a mode is read), then
# onnxruntime alone the four IOBinding ways, then torch eager
MODES = ("gen", "gen:DEVICE_INPUT=0", "gen:staging=0", "gen:PINNED=0", "gen:MIN_PIECE_BYTES=33554432",
         "gen:FILL_CHUNK_BYTES=1048576", "gen-uint8", "gen-uint8:DEVICE_INPUT=0", "gen-uint8:staging=0", "gen-fp16",
         "ort-plain", "ort-bound", "ort-prealloc", "ort-cuda-graph", "ort-on-device", "torch-eager")


def profile_score(bundle: Path, workdir: Path, rows: Path, device: str, out: Path) -> None:
    """cProfile of `gen score` of a 1M-row float32 NPY file: where its time goes (top 30 by
    cumulative time, to `out`)."""
    import numpy as np

    data = np.load(rows)
    path = workdir / "profile-rows.npy"
    np.save(path, np.resize(data, (1_048_576, data.shape[1])).astype(np.float32))
    stats = workdir / "score.prof"
    script = workdir / "gen_main.py"
    script.write_text("import sys\nfrom gen.cli.entry import main\nsys.exit(main())\n")
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(stats), str(script), "score", str(bundle),
                    str(path), "--out", str(workdir / "profile-scores.npy"), "--device", device], check=True,
                   capture_output=True)
    text = subprocess.run([sys.executable, "-c", "import pstats, sys; pstats.Stats(sys.argv[1]).sort_stats("
                           "'cumulative').print_stats(30); pstats.Stats(sys.argv[1]).sort_stats('tottime').print_stats(20)", str(stats)], capture_output=True, text=True).stdout
    out.write_text(text)
    path.unlink()


def measure(folder: Path, out: Path, quick: bool, dry_run: bool = False, modes=MODES, files: bool = True) -> None:
    """On the GPU machine: the CUDA record, as JSON to `out` (`dry_run`: the same steps on the
    CPU, to check the script where no GPU is lent; never merged)."""
    gpu = "dry run on the CPU" if dry_run else performance.cuda_device()
    if gpu is None:
        raise SystemExit("no GPU that both onnxruntime (CUDAExecutionProvider) and torch see")
    device = "cpu" if dry_run else "cuda"
    facts = probe(folder / "bundle-ae", device)
    record = performance.cuda_record(gpu, folder / "work", folder / "run-ae", folder / "bundle-ae",
                                     folder / "rows.npy", list((1, 256, 4096) if quick else performance.BATCHES),
                                     quick, uint8=True, device=device, modes=modes, files=files)
    record["machine"] = facts
    try:
        if not files:
            raise RuntimeError("files skipped")
        profile_score(folder / "bundle-ae", folder / "work", folder / "rows.npy", device,
                      out.with_name("score-profile.txt"))
    except Exception as exc:
        performance._log(f"profile of gen score did not run: {exc}")
    import onnxruntime
    import torch

    record["measured"] = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                          "onnxruntime": onnxruntime.__version__, "torch": torch.__version__}
    out.write_text(json.dumps(record, indent=1))


def small_calls_path(record: dict, mode: str) -> None:
    """gen's rate at the batches whose calls are under staging.MIN_STAGED_BYTES taken from `mode`
    (the plain path, which such calls take since the threshold was raised after the run); noted."""
    from gen.runtime import staging

    row_bytes = 784 * 4  # the section's MNIST float32 rows
    alts = record["alternatives"]
    if mode not in alts or "gen" not in alts:
        return
    moved = []
    alts[f"gen:MIN_STAGED_BYTES={4 << 20}"] = json.loads(json.dumps(alts["gen"]))  # what was measured as gen
    for batch, value in alts[mode].items():
        if str(batch).isdigit() and 4 << 20 <= int(batch) * row_bytes < staging.MIN_STAGED_BYTES:
            alts["gen"][batch] = value
            moved.append(int(batch))
    record["small_calls"] = {"mode": mode, "batches": sorted(moved), "min_staged_bytes": staging.MIN_STAGED_BYTES}


def merge(source: Path, results: Path, renames: dict[str, str] | None = None, reruns=(),
          small_calls: str | None = None) -> None:
    """Put a measured CUDA record into the results file's performance section; re-render.

    renames: {measured mode: name in the results}, where a default changed after the run to a
    setting the run measured as an ablation (the code path measured is the one that ships);
    reruns: records of later calls on another machine of the same kind (their rows/s and files
    are shown beside the main record's)."""
    record = json.loads(source.read_text())
    if record.get("device", "").startswith("dry run"):
        raise SystemExit(f"{source}: a dry run on the CPU, not GPU figures; not merged")
    data = json.loads(results.read_text())
    if not data.get("performance"):
        raise SystemExit(f"{results}: no performance section to add GPU rows to")
    if renames:
        alts = record["alternatives"]
        record["alternatives"] = {renames.get(m, m): v for m, v in alts.items()}
        record["renamed"] = renames
    if small_calls:
        small_calls_path(record, small_calls)
    record["reruns"] = []
    for path in reruns:
        again = json.loads(Path(path).read_text())
        if small_calls:
            small_calls_path(again, small_calls)
        record["reruns"].append({"machine": again.get("machine", {}), "measured": again.get("measured", {}),
                                 "alternatives": again["alternatives"], "files": again.get("files", {})})
    data["performance"]["cuda"] = record
    results.write_text(json.dumps(data, indent=2) + "\n")
    subprocess.run([sys.executable, str(BENCH / "report.py"), str(results), "--out", str(REPO / "BENCHMARKS.md")],
                   check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--mnist", type=Path, required=True)
    p.add_argument("--folder", type=Path, default=REPO / ".gpu-perf")
    m = sub.add_parser("measure")
    m.add_argument("folder", type=Path)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--quick", action="store_true")
    m.add_argument("--dry-run-cpu", action="store_true", help="the same steps on the CPU (a check of the script)")
    m.add_argument("--modes", help="comma-separated modes instead of MODES (a rerun of some)")
    m.add_argument("--no-files", action="store_true", help="skip gen score of files and its profile")
    g = sub.add_parser("merge")
    g.add_argument("source", type=Path)
    g.add_argument("--results", type=Path, default=BENCH / "results.json")
    g.add_argument("--rename", action="append", default=[], metavar="MEASURED->AS",
                   help="a measured mode to record under another name (a default changed after the run)")
    g.add_argument("--rerun", action="append", default=[], type=Path, help="a later record of some modes")
    g.add_argument("--small-calls", help="the measured mode whose rates gen's calls under MIN_STAGED_BYTES take")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.mnist, args.folder)
    elif args.step == "measure":
        (args.folder / "work").mkdir(exist_ok=True)
        measure(args.folder, args.out, args.quick, args.dry_run_cpu,
                tuple(args.modes.split(";")) if args.modes else MODES, not args.no_files)
    else:
        merge(args.source, args.results, dict(r.split("->", 1) for r in args.rename), args.rerun, args.small_calls)


if __name__ == "__main__":
    main()
