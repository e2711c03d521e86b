"""Open a bundle folder: verify it whole, then create one onnxruntime session per graph.

Nothing is half-loaded: every check runs before a model object exists, and any failure
raises `BundleError` naming what differs. In order: the folder holds only regular files
(no sub-folder, no symbolic link); the manifest parses into typed, validated records; the
folder holds exactly manifest.json, SHA256SUMS and the manifest's graph files; every file's
SHA-256 matches SHA256SUMS (format 5; older bundles have no SHA256SUMS and load with a
warning); each graph matches the manifest's own SHA-256 and declared inputs and outputs.

SHA256SUMS catches accidents (a truncated copy, a stray edit, a file from another bundle): a
deliberate tamperer can recompute it. Signatures are the defence against that.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import BundleError, GenWarning
from .manifest import DIGESTS, MANIFEST, WIDEN, GraphSpec, Manifest
from .signing import SIGNATURE, verify_signature
from .providers import check_session_provider, import_onnxruntime, select_providers

ORT_TYPES = {"float32": "tensor(float)", "float64": "tensor(double)", "float16": "tensor(float16)",
             "uint8": "tensor(uint8)",
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


def write_digests(folder: str | Path) -> Path:
    """Write SHA256SUMS for every other file of `folder` but the signature, which signs
    SHA256SUMS in turn (sha256sum's format, sorted by name; `sha256sum -c SHA256SUMS` checks it)."""
    folder = Path(folder)
    names = sorted(p.name for p in folder.iterdir() if p.name not in (DIGESTS, SIGNATURE))
    lines = [f"{sha256_file(folder / name)}  {name}\n" for name in names]
    path = folder / DIGESTS
    path.write_text("".join(lines), encoding="ascii")
    return path


DIGEST_LINE = re.compile(r"([0-9a-f]{64}) [ *]([A-Za-z0-9._-]+)")


def read_digests(folder: Path) -> dict[str, str]:
    """SHA256SUMS as {file name: SHA-256}; a malformed line is a refusal."""
    path = folder / DIGESTS
    try:
        text = path.read_text(encoding="ascii")
    except (UnicodeDecodeError, OSError) as exc:
        raise BundleError(f"{path}: cannot read ({exc})") from None
    digests: dict[str, str] = {}
    lines = text.split("\n")
    if lines[-1] != "":
        raise BundleError(f"{path}: does not end with a newline (truncated?)")
    for number, line in enumerate(lines[:-1], start=1):
        match = DIGEST_LINE.fullmatch(line)
        if match is None or match.group(2) in digests:
            raise BundleError(f"{path}: line {number}: expected 'SHA256  NAME' once per file, got {line[:80]!r}")
        digests[match.group(2)] = match.group(1)
    return digests


def list_entries(folder: Path) -> list[str]:
    """The bundle folder's entries, refusing anything but regular files."""
    names = []
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink():
            raise BundleError(f"{entry}: symbolic link in the bundle (a bundle holds regular files only)")
        if not entry.is_file():
            raise BundleError(f"{entry}: unexpected {'folder' if entry.is_dir() else 'entry'} in the bundle "
                              "(a bundle holds regular files only)")
        names.append(entry.name)
    return names


def verify_folder(folder: Path, manifest: Manifest, written_format: int) -> None:
    """Exactly manifest.json, SHA256SUMS and the graph files, each matching SHA256SUMS."""
    for spec in manifest.graphs.values():
        graph_path(folder, spec)  # no graph file outside the folder
    entries = list_entries(folder)
    graph_files = {spec.file for spec in manifest.graphs.values()}
    expected = {MANIFEST, DIGESTS, SIGNATURE} | graph_files
    unexpected = [name for name in entries if name not in expected]
    if unexpected:
        raise BundleError(f"{folder / unexpected[0]}: file not part of the bundle (it holds {MANIFEST}, {DIGESTS} "
                          f"and its graphs: {', '.join(sorted(graph_files))})")
    if DIGESTS not in entries:
        if written_format >= 5:
            raise BundleError(f"{folder / DIGESTS}: missing (format {written_format} bundles list every file's "
                              "SHA-256 there)")
        warnings.warn(f"{folder}: bundle format {written_format} has no {DIGESTS}, so only its graphs are "
                      "checksummed; re-export it with this gen to verify it whole", GenWarning, stacklevel=3)
        return
    digests = read_digests(folder)
    listed = set(digests)
    present = set(entries) - {DIGESTS, SIGNATURE}
    if listed - present:
        raise BundleError(f"{folder / sorted(listed - present)[0]}: listed in {DIGESTS} but missing")
    if present - listed:
        raise BundleError(f"{folder / sorted(present - listed)[0]}: not listed in {DIGESTS}")
    for name in sorted(listed):
        actual = sha256_file(folder / name)
        if actual != digests[name]:
            raise BundleError(f"{folder / name}: SHA-256 differs from {DIGESTS} ({digests[name][:12]}..., file "
                              f"{actual[:12]}...); the bundle is corrupted or was modified")


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


def open_bundle(folder: str | Path, device: str = "auto", threads: int | None = None,
                public_key: str | Path | None = None) -> LoadedBundle:
    """Verify the bundle at `folder` and create its sessions on `device`. With `public_key`
    (an EC public key in PEM) the bundle must carry a valid signature by it (model.sig).

    `threads` caps onnxruntime's intra-op threads (None: onnxruntime's default, one per core);
    set it to 1 when several worker processes share a machine.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"{folder}: bundle folder not found")
    manifest, written_format = Manifest.read_versioned(folder)
    verify_folder(folder, manifest, written_format)
    if public_key is not None:
        verify_signature(folder, public_key)
    blobs = {role: read_verified(folder, spec) for role, spec in manifest.graphs.items()}
    ort = import_onnxruntime()
    providers = select_providers(device, ort.get_available_providers())
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    # The widen graph is one Cast (run on the GPU, or on CPU under IOBinding only): a thread pool
    # of its own would cost more to start (~3 ms of every load, measured) than it could save.
    single = ort.SessionOptions()
    single.log_severity_level, single.intra_op_num_threads = 3, 1
    sessions, used = {}, []
    for role, blob in blobs.items():
        path = folder / manifest.graphs[role].file
        try:
            session = ort.InferenceSession(blob, sess_options=single if role == WIDEN[0] else options,
                                           providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(f"{path}: onnxruntime cannot load the graph ({exc})".splitlines()[0]) from None
        check_io(path, manifest.graphs[role], session)
        sessions[role] = session
        used = session.get_providers()
    provider = check_session_provider(device, providers, used)
    return LoadedBundle(folder, manifest, sessions, device, provider)
