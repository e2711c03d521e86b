"""Host rows to a CUDA session at the link's rate (issue 27): page-locked (pinned) host
buffers, filled by a few threads while the GPU works on the previous piece, and checked for
NaN/inf as they are filled.

Why: a numpy array in ordinary (pageable) memory crosses to the GPU at the driver's pageable
rate (7-14 GB/s on the H200 machines measured, against 55 GB/s from pinned memory), and the
whole-array `isfinite` check before it is one more single-threaded pass (5-10 GB/s there). Here
a call's rows are cut into pieces; each piece is copied by `THREADS` threads (numpy releases
the GIL while it copies and sums) into one of two pinned buffers, each thread checking its
share by its sum (NaN and inf survive a sum). onnxruntime takes the pinned piece as its bound
input (IOBinding, no copy on the host) and moves it to the device by DMA inside
`run_with_iobinding`, which releases the GIL: the next piece is copied meanwhile. Measured on
the H200 (BENCHMARKS.md): 65,536 float32 rows a call 1.1M -> 5.5M rows/s; small calls (under
MIN_STAGED_BYTES, 16 MiB) keep the plain path: at 4,096 rows staging gained nothing.

Pinned memory comes from onnxruntime's own allocator where its CUDA provider lists a device
(`OrtEpDevice.memory_info(HOST_ACCESSIBLE)`; the 1.31 CUDA build does not), else from
`cudaHostAlloc` of the CUDA runtime onnxruntime loaded, else the buffers are ordinary memory
(still filled in parallel and overlapped: what tests exercise on machines without CUDA).
`Stager.kind` says which. The constants below are module settings that bench/gpu_perf.py's
ablations change one at a time.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

THREADS = max(2, min(8, (os.cpu_count() or 2) // 2))  # copy threads (the host side of a 16-core box: 8)
TASK_BYTES = 2 << 20  # a copy thread's share of a piece is at least this (each hand-off costs tens of us)
PIECES = 4  # a call of n rows is cut into about this many pieces, so copies overlap the device's work...
MIN_PIECE_BYTES = 8 << 20  # ...of at least this many bytes each (and at most the model's batch size)
MAX_PIECE_BYTES = 64 << 20  # nor more than this (two buffers of it are pinned: large images stay bounded)
# Smaller calls bind the caller's rows directly: at 4,096 MNIST rows (12.8 MB) that plain path was
# 4-24% faster than staging on 3 of 4 H200 machines (the thread hand-offs cost what the link saves)
MIN_STAGED_BYTES = 16 << 20
FILL_CHUNK_BYTES = 0  # 0: each thread copies and sums its share in one go (fewest GIL round trips)
DEVICE_INPUT = False  # True: copy each staged piece into a device buffer (update_inplace) and bind that;
# measured slower on the H200 (it holds the GIL through the copy, stalling the copy threads)
PINNED = True  # False: ordinary memory even on CUDA (an ablation for bench/performance.py)


def _cudart():
    """The CUDA runtime onnxruntime's CUDA provider loaded into this process (found in
    /proc/self/maps), else one by its usual names; None where there is none."""
    paths = []
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "/libcudart.so" in line})
    except OSError:
        pass
    for name in [*paths, "libcudart.so.13", "libcudart.so.12", "libcudart.so"]:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.cudaHostAlloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_uint]
        lib.cudaHostAlloc.restype = ctypes.c_int
        lib.cudaFreeHost.argtypes = [ctypes.c_void_p]
        lib.cudaFreeHost.restype = ctypes.c_int
        return lib
    return None


def _onnxruntime_host_memory():
    """onnxruntime's host-accessible (pinned) memory info of its CUDA provider, or None."""
    try:
        import onnxruntime as ort

        for device in ort.get_ep_devices():
            if device.ep_name == "CUDAExecutionProvider":
                return device.memory_info(ort.OrtDeviceMemoryType.HOST_ACCESSIBLE)
    except Exception:  # an onnxruntime without the EP-device API, or no CUDA device listed
        return None
    return None


class HostBuffer:
    """`nbytes` of host memory, pinned where `pinned` and CUDA allows (`kind`: "onnxruntime",
    "cudart" or "pageable"), viewed as numpy arrays with `view`."""

    def __init__(self, nbytes: int, pinned: bool):
        self.nbytes = nbytes
        self.kind, self._owner = "pageable", None
        address = None
        if pinned and PINNED:
            address = self._from_onnxruntime(nbytes) or self._from_cudart(nbytes)
        if address is None:
            self._array = np.empty(nbytes, dtype=np.uint8)
        else:
            self._array = np.frombuffer((ctypes.c_uint8 * nbytes).from_address(address), dtype=np.uint8)

    def _from_onnxruntime(self, nbytes: int) -> int | None:
        info = _onnxruntime_host_memory()
        if info is None:
            return None
        try:
            import onnxruntime as ort

            value = ort.OrtValue.ortvalue_from_shape_and_type([nbytes], np.uint8, memory_info=info)
            address = value.data_ptr()
        except Exception:
            return None
        self.kind, self._owner = "onnxruntime", value
        return address or None

    def _from_cudart(self, nbytes: int) -> int | None:
        lib = _cudart()
        if lib is None:
            return None
        pointer = ctypes.c_void_p()
        if lib.cudaHostAlloc(ctypes.byref(pointer), nbytes, 1) != 0 or not pointer.value:  # 1: portable
            return None
        self.kind, self._owner = "cudart", weakref.finalize(self, lib.cudaFreeHost, pointer.value)
        return pointer.value

    def view(self, dtype, shape) -> np.ndarray:
        """The buffer's first bytes as an array of `dtype` and `shape` (no copy)."""
        count = math.prod(shape)
        return self._array[:count * np.dtype(dtype).itemsize].view(dtype).reshape(shape)


def _finite(rows: np.ndarray) -> bool:
    """Whether every value is finite: a sum (NaN and inf survive it), value by value only when
    the sum overflows float32."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(rows.sum()) or np.isfinite(rows).all())


def fill(dst: np.ndarray, src: np.ndarray, check: bool) -> bool:
    """Copy rows `src` into `dst`; with `check`, also say whether every value is finite (a sum:
    NaN and inf survive it; one that overflows float32 is looked at value by value). With
    FILL_CHUNK_BYTES, chunk by chunk, each summed while in the cache; else one copy and one sum."""
    step = max(1, FILL_CHUNK_BYTES // max(1, dst[:1].nbytes)) if FILL_CHUNK_BYTES else len(dst)
    finite = True
    for i in range(0, len(dst), step):
        part = dst[i:i + step]
        np.copyto(part, src[i:i + step])
        finite = finite and (not check or _finite(part))
    return finite


class Stager:
    """Two host buffers per row dtype and a pool of copy threads, for one model's input rows.

    `pieces(rows, batch_rows, check)` yields (first row, staged rows, finite) piece by piece;
    the copy of the next piece runs while the caller works on the one yielded. One call at a
    time: `lock` is held for the whole stream (a second caller takes the plain path).
    """

    def __init__(self, row_shape: list[int], pinned: bool, threads: int | None = None):
        self.row_shape = list(row_shape)
        self.pinned = pinned
        self.threads = threads or THREADS
        self.lock = threading.Lock()
        self._buffers: dict[str, list[HostBuffer]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._device_values: dict = {}

    @property
    def kind(self) -> str | None:
        """Where the buffers live ("onnxruntime", "cudart", "pageable"); None before the first use."""
        return next((b[0].kind for b in self._buffers.values()), None)

    def piece_rows(self, n: int, batch_rows: int, row_bytes: int) -> int:
        """Rows per piece for a call of `n` rows of `row_bytes`: about n / PIECES, at least
        MIN_PIECE_BYTES' worth, at most `batch_rows` and MAX_PIECE_BYTES' worth (one row at least)."""
        most = min(batch_rows, n, max(1, MAX_PIECE_BYTES // row_bytes))
        return max(1, min(most, max(-(-MIN_PIECE_BYTES // row_bytes), -(-n // PIECES))))

    def _slots(self, dtype: np.dtype, rows: int, batch_rows: int) -> list[HostBuffer]:
        """The two buffers of `dtype`, holding at least `rows` rows (grown by powers of two up
        to `batch_rows`, so a few first calls settle them; pinned memory is slow to allocate)."""
        row_bytes = math.prod(self.row_shape) * dtype.itemsize
        pair = self._buffers.get(dtype.str)
        if pair is None or pair[0].nbytes < rows * row_bytes:
            capacity = min(max(rows, batch_rows), 1 << max(0, rows - 1).bit_length())
            self._buffers[dtype.str] = pair = [HostBuffer(capacity * row_bytes, self.pinned) for _ in range(2)]
        return pair

    def _submit(self, rows: np.ndarray, start: int, size: int, slot: HostBuffer, check: bool):
        dst = slot.view(rows.dtype, (size, *self.row_shape))
        src = rows[start:start + size]
        parts = max(1, min(self.threads, dst.nbytes // TASK_BYTES))
        if parts == 1:  # one task's worth: copied here, no hand-off
            return dst, [fill(dst, src, check)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="gen-staging")
        bounds = np.linspace(0, size, parts + 1).astype(int)
        return dst, [self._pool.submit(fill, dst[a:b], src[a:b], check) for a, b in zip(bounds[:-1], bounds[1:])]

    def pieces(self, rows: np.ndarray, batch_rows: int, check: bool) -> Iterator[tuple[int, np.ndarray, bool]]:
        """(first row, staged copy of the piece's rows, all finite) for each piece of `rows`."""
        n = len(rows)
        size = self.piece_rows(n, batch_rows, rows[:1].nbytes)
        slots = self._slots(rows.dtype, size, batch_rows)
        starts = list(range(0, n, size))
        pending = self._submit(rows, 0, min(size, n), slots[0], check)
        try:
            for k, start in enumerate(starts):
                staged, futures = pending
                finite = all(f if isinstance(f, bool) else f.result() for f in futures)
                pending = None
                if k + 1 < len(starts) and finite:  # the next piece is copied while this one runs
                    nxt = starts[k + 1]
                    pending = self._submit(rows, nxt, min(size, n - nxt), slots[(k + 1) % 2], check)
                yield start, staged, finite
                if not finite:
                    return
        finally:
            if pending is not None:  # the caller stopped early: let the copies finish before reuse
                for f in pending[1]:
                    if not isinstance(f, bool):
                        f.result()

    def device_value(self, shape: tuple, dtype: np.dtype, device: str):
        """A buffer on `device` for a staged piece of `shape` and `dtype` (an OrtValue, kept for
        the next calls: full pieces share one shape; at most a few shapes are kept)."""
        import onnxruntime as ort

        key = (np.dtype(dtype).str, tuple(shape), device)
        value = self._device_values.pop(key, None)
        if value is None:
            value = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, device, 0)
        self._device_values[key] = value  # most recently used last
        while len(self._device_values) > 4:
            del self._device_values[next(iter(self._device_values))]
        return value

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._buffers.clear()
        self._device_values.clear()
