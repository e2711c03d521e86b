"""Open a bundle folder: verify it whole, then create one onnxruntime session per graph.

Nothing is half-loaded: every check (format version, paths, SHA-256, graph I/O against the
manifest) runs before a model object exists, and any failure raises `BundleError`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .errors import BundleError
from .manifest import GraphSpec, Manifest
from .providers import check_session_provider, import_onnxruntime, select_providers

ORT_TYPES = {"float32": "tensor(float)", "float64": "tensor(double)",
             "int64": "tensor(int64)", "bool": "tensor(bool)"}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def graph_path(folder: Path, spec: GraphSpec) -> Path:
    """Resolve a graph's file, refusing any path that leaves the bundle folder."""
    root = folder.resolve()
    rel = Path(spec.file)
    if rel.is_absolute() or ".." in rel.parts:
        raise BundleError(f"{folder}: graph {spec.role!r} points outside the bundle ({spec.file})")
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise BundleError(f"{folder}: graph {spec.role!r} points outside the bundle ({spec.file})")
    return path


def read_verified(folder: Path, spec: GraphSpec) -> bytes:
    """Read a graph file and check its SHA-256 against the manifest."""
    path = graph_path(folder, spec)
    if not path.is_file():
        raise BundleError(f"{path}: missing bundle file for graph {spec.role!r}")
    data = path.read_bytes()
    digest = sha256_bytes(data)
    if digest != spec.sha256:
        raise BundleError(
            f"{path}: checksum mismatch (manifest {spec.sha256[:12]}..., file {digest[:12]}...); "
            "the bundle is corrupted or was modified"
        )
    return data


def check_io(path: Path, spec: GraphSpec, session) -> None:
    """Compare a session's inputs and outputs with the manifest's record of them."""
    for kind, declared, actual in (("input", spec.inputs, session.get_inputs()),
                                   ("output", spec.outputs, session.get_outputs())):
        got = [(a.name, a.type, ["batch" if not isinstance(d, int) else d for d in a.shape]) for a in actual]
        want = [(t.name, ORT_TYPES.get(t.dtype, t.dtype), t.shape) for t in declared]
        if got != want:
            raise BundleError(f"{path}: graph {kind}s {got} do not match the manifest {want}")


@dataclass
class LoadedBundle:
    folder: Path
    manifest: Manifest
    sessions: dict
    device: str
    provider: str


def open_bundle(folder: str | Path, device: str = "auto", threads: int | None = None) -> LoadedBundle:
    """Verify the bundle at `folder` and create its sessions on `device`.

    `threads` caps onnxruntime's intra-op threads (None: onnxruntime's default, one per core);
    set it to 1 when several worker processes share a machine.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"{folder}: bundle folder not found")
    manifest = Manifest.read(folder)
    blobs = {role: read_verified(folder, spec) for role, spec in manifest.graphs.items()}
    ort = import_onnxruntime()
    providers = select_providers(device, ort.get_available_providers())
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    sessions, used = {}, []
    for role, blob in blobs.items():
        path = folder / manifest.graphs[role].file
        try:
            session = ort.InferenceSession(blob, sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(f"{path}: onnxruntime cannot load the graph ({exc})".splitlines()[0]) from None
        check_io(path, manifest.graphs[role], session)
        sessions[role] = session
        used = session.get_providers()
    provider = check_session_provider(device, providers, used)
    return LoadedBundle(folder, manifest, sessions, device, provider)
