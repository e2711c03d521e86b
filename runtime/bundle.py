"""Open a bundle folder: verify it whole, then create one onnxruntime session per graph.

Nothing is half-loaded: every check runs before a model object exists, and any failure
raises `BundleError` naming what differs. In order: the public key, when one is given, is a
key bundles are signed with (signing.py); the manifest, within its bounds (manifest.py),
parses into typed, validated records; the folder holds only regular files (no sub-folder,
no symbolic link), exactly manifest.json, SHA256SUMS and the manifest's graph files; each
graph file's size (by stat, before anything is hashed) is at most MAX_GRAPH_BYTES and the size
the manifest records (format 8); every file's SHA-256 matches SHA256SUMS (format 5; older
bundles have no SHA256SUMS and load with a warning); the signature, with a key; each graph
matches the manifest's own SHA-256, uses only the operator domains gen exports (OP_DOMAINS)
and keeps no tensor in an external file, all read from its bytes before onnxruntime parses
them; and its inputs and outputs are the manifest's.

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
from .manifest import DIGESTS, FORMAT_VERSION, MANIFEST, WIDEN, GraphSpec, Manifest, check_size, read_limited
from .signing import SIGNATURE, check_public_key, verify_signature
from .providers import check_session_provider, import_onnxruntime, select_providers

# One graph file at most: protobuf (and so onnxruntime) parses no message over 2 GiB - 1; past
# that ONNX keeps tensors in external data files, which a bundle does not hold. Checked by stat
# before a file is hashed or read, whatever the manifest says.
MAX_GRAPH_BYTES = (2 << 30) - 1
MAX_DIGESTS_BYTES = 1 << 20  # SHA256SUMS: one line per file, a few hundred bytes
# The operator domains a graph may use: gen exports (every family; float, `--quantize int8`
# and `--precision fp16`) use the standard ONNX operators only, the default domain ("" or
# "ai.onnx"). onnxruntime would also run its contrib ops (com.microsoft), the ai.onnx.ml ops,
# and ops of a domain the graph's opset_import never declares, so each node is read.
OP_DOMAINS = ("", "ai.onnx")
# A bound on the protobuf fields read to find them (gen's graphs have at most a few thousand),
# so that a file padded with millions of tiny fields is refused instead of walked for minutes.
MAX_GRAPH_FIELDS = 1 << 18
MAX_GRAPH_NESTING = 16  # subgraphs (If, Loop, Scan bodies) within subgraphs; gen's graphs have none

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
    data = read_limited(path, MAX_GRAPH_BYTES, f"graph {spec.role!r}")
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
        text = read_limited(path, MAX_DIGESTS_BYTES, "digest list").decode("ascii")
    except UnicodeDecodeError as exc:
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
    check_sizes(folder, manifest, set(entries))
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


def check_sizes(folder: Path, manifest: Manifest, entries: set[str]) -> None:
    """Each graph file present is at most MAX_GRAPH_BYTES and, where the manifest records it
    (format 8), exactly its size: by stat, before anything is hashed or read."""
    for role, spec in manifest.graphs.items():
        if spec.file not in entries:
            continue  # a missing file is named by the checks that follow
        path = folder / spec.file
        size = check_size(path, MAX_GRAPH_BYTES, f"graph {role!r}")
        if spec.file_bytes is not None and size != spec.file_bytes:
            raise BundleError(f"{path}: {size:,} bytes, but the manifest records {spec.file_bytes:,} for graph "
                              f"{role!r}; the bundle is corrupted or was modified")


# -- what a graph holds, read from its protobuf encoding (the runtime has no onnx package) ----
# Field numbers of onnx.proto (ModelProto, GraphProto, ...) for the messages that hold nodes
# and tensors: each kind of message -> {field number: kind of the message that field holds}.
_HOLDS = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
NODE_OP_TYPE, NODE_DOMAIN, TENSOR_NAME, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 4, 7, 8, 13, 14


class _Malformed(Exception):
    """Bytes that are not a protobuf message as onnx.proto lays one out."""


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 64:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos
    raise _Malformed("truncated or overlong varint")


class _Reader:
    """A walk over the fields of a serialized ModelProto that reaches every node (subgraphs,
    model-local functions and training graphs included) and every tensor, skipping all else
    by its length: a few hundred microseconds for a gen graph, and no protobuf import (which
    would add tens of milliseconds to every load)."""

    def __init__(self, data: bytes):
        self.data, self.fields = data, 0
        self.ops: set[tuple[str, str]] = set()  # (domain, op_type)
        self.external: list[str] = []  # names of tensors kept in an external file

    def walk(self, kind: str, start: int, end: int, depth: int = 0) -> None:
        holds, text = _HOLDS[kind], {}
        for number, wire, value in self._fields(start, end):
            if wire == 2 and number in holds:
                child = holds[number]
                if child == "graph" and depth >= MAX_GRAPH_NESTING:
                    raise _Malformed(f"subgraphs nested more than {MAX_GRAPH_NESTING} deep")
                self.walk(child, *value, depth + (child == "graph"))
            elif kind == "node" and wire == 2 and number in (NODE_OP_TYPE, NODE_DOMAIN):
                text[number] = value  # the last one wins, as in protobuf when a singular field repeats
            elif kind == "tensor" and wire == 2 and number == TENSOR_NAME:
                text[number] = value
            elif kind == "tensor" and ((wire == 2 and number == TENSOR_EXTERNAL_DATA)
                                       or (wire == 0 and number == TENSOR_DATA_LOCATION and value == 1)):
                text["external"] = True
        if kind == "node":
            self.ops.add((self._text(text.get(NODE_DOMAIN)), self._text(text.get(NODE_OP_TYPE))))
        elif kind == "tensor" and text.get("external"):
            self.external.append(self._text(text.get(TENSOR_NAME)))

    def _fields(self, pos: int, end: int):
        """(number, wire type, value) of each field in data[pos:end]: a varint's value, or a
        length-delimited field's (start, end); fixed-width fields are skipped."""
        data = self.data
        while pos < end:
            self.fields += 1
            if self.fields > MAX_GRAPH_FIELDS:
                raise _Malformed(f"more than {MAX_GRAPH_FIELDS:,} protobuf fields; gen's have a few thousand")
            key, pos = _varint(data, pos, end)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = _varint(data, pos, end)
            elif wire == 2:
                length, pos = _varint(data, pos, end)
                value = (pos, pos + length)
                pos += length
            elif wire in (1, 5):
                value, pos = None, pos + (8 if wire == 1 else 4)
            else:  # groups (3, 4), deprecated and never in ONNX, and invalid types
                raise _Malformed(f"wire type {wire}")
            if pos > end:
                raise _Malformed("a field runs past the end of its message")
            yield number, wire, value

    def _text(self, span: tuple[int, int] | None) -> str:
        return "" if span is None else self.data[span[0]:span[1]].decode("utf-8", "replace")


def check_graph(path: Path, role: str, blob: bytes) -> None:
    """Refuse a graph that uses an operator outside OP_DOMAINS or keeps a tensor in an external
    file, naming the graph and the operator or tensor, before onnxruntime parses it."""
    reader = _Reader(blob)
    try:
        reader.walk("model", 0, len(blob))
    except _Malformed as exc:
        raise BundleError(f"{path}: graph {role!r} is not an ONNX model gen reads ({exc})") from None
    foreign = sorted((domain, op) for domain, op in reader.ops if domain not in OP_DOMAINS)
    if foreign:
        domain, op = foreign[0]
        raise BundleError(f"{path}: graph {role!r} uses operator {_shown(op)} of domain {_shown(domain)}; a bundle's "
                          f"graphs use the standard ONNX operators only (domain ai.onnx)"
                          + (f", and {len(foreign) - 1} more outside it" if len(foreign) > 1 else ""))
    if reader.external:
        raise BundleError(f"{path}: graph {role!r} keeps tensor {_shown(reader.external[0])} in an external data "
                          "file; a bundle's graphs hold all their tensors")


def _shown(text: str) -> str:
    """A name read from a graph, quoted, escaped and cut short so a message stays one line."""
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."


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
    written_format: int = FORMAT_VERSION  # the format version manifest.json states (before upgrades)


def open_bundle(folder: str | Path, device: str = "auto", threads: int | None = None,
                public_key: str | Path | None = None) -> LoadedBundle:
    """Verify the bundle at `folder` and create its sessions on `device`. With `public_key`
    (an EC public key on P-256, P-384 or P-521 in PEM) the bundle must carry a valid
    signature by it (model.sig).

    `threads` caps onnxruntime's intra-op threads (None: onnxruntime's default, one per core);
    set it to 1 when several worker processes share a machine.
    """
    folder = Path(folder)
    if public_key is not None:
        check_public_key(public_key)  # a key that cannot verify anything is refused before any work
    if not folder.is_dir():
        raise BundleError(f"{folder}: bundle folder not found")
    manifest, written_format = Manifest.read_versioned(folder)
    verify_folder(folder, manifest, written_format)
    if public_key is not None:
        verify_signature(folder, public_key)
    blobs = {role: read_verified(folder, spec) for role, spec in manifest.graphs.items()}
    for role, blob in blobs.items():
        check_graph(folder / manifest.graphs[role].file, role, blob)
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
    return LoadedBundle(folder, manifest, sessions, device, provider, written_format)
