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
    rows = read_idx(mnist).reshape(5000, -1).astype(np.float32)
    np.save(folder / "rows.npy", rows)
    exclude = REPO / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    if f"/{folder.name}/" not in (exclude.read_text() if exclude.exists() else ""):
        with open(exclude, "a") as f:
            f.write(f"/{folder.name}/\n")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    print(f"{folder}: {size:.1f} MiB to carry")


def measure(folder: Path, out: Path, quick: bool, dry_run: bool = False) -> None:
    """On the GPU machine: the CUDA record, as JSON to `out` (`dry_run`: the same steps on the
    CPU, to check the script where no GPU is lent; never merged)."""
    gpu = "dry run on the CPU" if dry_run else performance.cuda_device()
    if gpu is None:
        raise SystemExit("no GPU that both onnxruntime (CUDAExecutionProvider) and torch see")
    record = performance.cuda_record(gpu, folder / "work", folder / "run-ae", folder / "bundle-ae",
                                     folder / "rows.npy", list((1, 256, 4096) if quick else performance.BATCHES),
                                     quick, uint8=True, device="cpu" if dry_run else "cuda")
    import onnxruntime
    import torch

    record["measured"] = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                          "onnxruntime": onnxruntime.__version__, "torch": torch.__version__}
    out.write_text(json.dumps(record, indent=1))


def merge(source: Path, results: Path) -> None:
    """Put a measured CUDA record into the results file's performance section; re-render."""
    record = json.loads(source.read_text())
    if record.get("device", "").startswith("dry run"):
        raise SystemExit(f"{source}: a dry run on the CPU, not GPU figures; not merged")
    data = json.loads(results.read_text())
    if not data.get("performance"):
        raise SystemExit(f"{results}: no performance section to add GPU rows to")
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
    g = sub.add_parser("merge")
    g.add_argument("source", type=Path)
    g.add_argument("--results", type=Path, default=BENCH / "results.json")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.mnist, args.folder)
    elif args.step == "measure":
        (args.folder / "work").mkdir(exist_ok=True)
        measure(args.folder, args.out, args.quick, args.dry_run_cpu)
    else:
        merge(args.source, args.results)


if __name__ == "__main__":
    main()
