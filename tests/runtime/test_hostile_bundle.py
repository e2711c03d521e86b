"""Hostile bundles and keys (issue 23): each is refused in one line (exit 2 from the CLI) before
gen spends time or memory on it, never with a traceback.

Keys: RSA, Ed25519 or an EC key off model-signing's curves, a public key given for a private
one (and the reverse), a key file of a gigabyte. Signatures: a mismatch is one short line that
names the key (and its fingerprint) and the files that differ, without byte escapes.
manifest.json: too large, nested 100,000 deep, a 5,000-digit integer, a key given twice.
Graphs: past protobuf's 2 GiB (2 GiB and 16 GiB, sparse files: refused by stat, before
anything is hashed), a size other than the manifest records, an operator of a domain gen
never exports (com.microsoft, ai.onnx.ml, a custom one; in a subgraph or a model-local
function too), a tensor kept in an external file. And `--maps` on a bundle without
per-feature errors says so plainly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

onnx = pytest.importorskip("onnx")  # the bundles are exported (gen[train]); tests build graphs with it too
from onnx import TensorProto, helper  # noqa: E402

from gen.cli.main import app  # noqa: E402
from gen.runtime import FORMAT_VERSION, BundleError, InputError, NotSupported, load  # noqa: E402
from gen.runtime import bundle as bundle_module  # noqa: E402
from gen.runtime.bundle import MAX_GRAPH_BYTES, check_graph, sha256_file, write_digests  # noqa: E402
from gen.runtime.manifest import MAX_JSON_DEPTH, MAX_MANIFEST_BYTES  # noqa: E402
from gen.runtime.model import RECONSTRUCTION_FAMILIES  # noqa: E402

runner = CliRunner()


def gen(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def one_line_exit_2(result) -> str:
    """The CLI refused with exit 2 and one line `error: ...`, no traceback; return the line."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def refused(folder, *fragments, **options) -> str:
    """load() refuses `folder` with a one-line BundleError holding every fragment."""
    with pytest.raises(BundleError) as info:
        load(folder, device="cpu", **options)
    message = str(info.value)
    assert "\n" not in message and all(f in message for f in fragments), message
    return message


def sparse(path, size: int):
    """A file of `size` bytes that takes no disk (a hole), standing in for a huge one."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def reseal(folder, role: str | None = None):
    """Make manifest.json and SHA256SUMS agree with the folder again, as a deliberate tamperer
    would: the manifest's record of graph `role` (digest and size) and then SHA256SUMS."""
    if role is not None:
        path = folder / "manifest.json"
        manifest = json.loads(path.read_text())
        graph = manifest["graphs"][role]
        file = folder / graph["file"]
        graph["sha256"] = sha256_file(file)
        if "file_bytes" in graph:  # format 8
            graph["file_bytes"] = file.stat().st_size
        path.write_text(json.dumps(manifest, indent=2) + "\n")
    write_digests(folder)


@pytest.fixture
def no_hashing(monkeypatch):
    """Fail the test if the bundle loader hashes any file (it must refuse by stat first)."""

    def hashed(path):
        raise AssertionError(f"{path} was hashed before it was refused")

    monkeypatch.setattr(bundle_module, "sha256_file", hashed)


# -- keys and signatures ----------------------------------------------------------------------

NAMES = {"rsa": "RSA 2048-bit", "ed25519": "Ed25519", "secp256k1": "EC secp256k1"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple]:
    """{kind: (private PEM path, public PEM path, key)}: two EC P-256 pairs ("ec", "other-ec")
    and one of each kind model-signing does not sign with."""
    pytest.importorskip("model_signing")  # gen[sign]; it brings cryptography
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    kinds = {"ec": lambda: ec.generate_private_key(ec.SECP256R1()),
             "other-ec": lambda: ec.generate_private_key(ec.SECP256R1()),
             "rsa": lambda: rsa.generate_private_key(65537, 2048),
             "ed25519": ed25519.Ed25519PrivateKey.generate,
             "secp256k1": lambda: ec.generate_private_key(ec.SECP256K1())}
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    for kind, make in kinds.items():
        key = make()
        private, public = folder / f"{kind}.pem", folder / f"{kind}.pub.pem"
        private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
        made[kind] = (private, public, key)
    return made


@pytest.fixture
def signed(bundle_copy, keys):
    """A copy of the ae bundle signed with the EC key."""
    from gen.runtime.signing import sign_bundle

    folder = bundle_copy("ae")
    sign_bundle(folder, keys["ec"][0])
    return folder


@pytest.mark.parametrize("kind", ["rsa", "ed25519", "secp256k1"])
def test_a_key_model_signing_does_not_take_is_refused_naming_file_type_and_what_is_accepted(
        kind, keys, runs, signed, tmp_path):
    private, public, _ = keys[kind]
    for result, key in ((gen("export", runs["ae"], "--out", tmp_path / "B", "--sign-key", private), private),
                        (gen("verify", signed, "--public-key", public), public),
                        (gen("sample", signed, "--n", 2, "--out", tmp_path / "x.npy",
                             env={"GEN_PUBLIC_KEY": str(public)}), public)):
        line = one_line_exit_2(result)
        assert str(key) in line and NAMES[kind] in line and "P-256, P-384 or P-521" in line, line
    assert not (tmp_path / "B").exists() and not (tmp_path / "x.npy").exists()
    with pytest.raises(InputError, match=NAMES[kind]):
        load(signed, public_key=public)


def test_a_public_key_for_a_private_one_and_the_reverse(keys, runs, signed, tmp_path):
    private, public, _ = keys["ec"]
    line = one_line_exit_2(gen("export", runs["ae"], "--out", tmp_path / "B", "--sign-key", public))
    assert "holds a public key" in line and str(public) in line
    line = one_line_exit_2(gen("verify", signed, "--public-key", private))
    assert "holds a private key" in line and str(private) in line
    assert gen("verify", signed, "--public-key", public).exit_code == 0


def test_a_huge_key_file_is_refused_by_its_size_unread(keys, runs, signed, tmp_path, monkeypatch):
    huge = sparse(tmp_path / "huge.pem", 1 << 30)
    original = type(huge).read_bytes

    def read_bytes(path):
        assert path != huge, "the key file was read whole"
        return original(path)

    monkeypatch.setattr(type(huge), "read_bytes", read_bytes)
    for result in (gen("export", runs["ae"], "--out", tmp_path / "B", "--sign-key", huge),
                   gen("verify", signed, "--public-key", huge)):
        line = one_line_exit_2(result)
        assert str(huge) in line and "1,073,741,824 bytes" in line and "65,536" in line, line


def test_a_huge_signature_file_is_refused_by_its_size(keys, signed):
    sparse(signed / "model.sig", 2 << 20)
    refused(signed, "model.sig", "2,097,152 bytes", public_key=keys["ec"][1])


def short(message: str) -> None:
    """One line, no byte escapes or digests, and short once its paths (the bundle's, the key's) are left out."""
    words = " ".join(w for w in message.split() if "/" not in w)
    assert "\n" not in message and "\\x" not in message and "Digest(" not in message and len(words) < 160, message


def test_signed_by_another_key_is_one_short_line_with_its_fingerprint(keys, signed):
    from gen.runtime.signing import fingerprint

    _, other, key = keys["other-ec"]
    message = refused(signed, "signature does not match the public key", str(other), fingerprint(key),
                      "made with another key", public_key=other)
    short(message)


def test_an_edit_that_reseals_every_digest_names_the_files_not_their_bytes(keys, signed):
    path = signed / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["scoring"]["threshold"] = 1e9
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    write_digests(signed)
    load(signed)  # without the key nothing can tell
    short(refused(signed, "signature does not match", "changed", "manifest.json", "SHA256SUMS",
                  public_key=keys["ec"][1]))
    del manifest["graphs"]["widen"]  # a graph dropped, manifest and digests agreeing again
    (signed / "widen.onnx").unlink()
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    write_digests(signed)
    short(refused(signed, "removed widen.onnx; changed SHA256SUMS, manifest.json", public_key=keys["ec"][1]))


def test_a_damaged_signature_file_is_one_line(keys, signed):
    data = bytearray((signed / "model.sig").read_bytes())
    for position in (len(data) // 2, len(data) - 40):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        (signed / "model.sig").write_bytes(bytes(damaged))
        short(refused(signed, "model.sig", public_key=keys["ec"][1]))
    (signed / "model.sig").write_bytes(b"[" * 100_000)
    short(refused(signed, "model.sig", "not a readable model-signing signature", public_key=keys["ec"][1]))


# -- manifest.json ----------------------------------------------------------------------------

def edit_text(folder, change):
    path = folder / "manifest.json"
    path.write_text(change(path.read_text()))


@pytest.mark.parametrize("depth", [100_000, MAX_JSON_DEPTH])  # in config, itself 2 levels down
def test_deeply_nested_manifest_values_are_refused(bundle_copy, depth):
    folder = bundle_copy("ae")
    # in `config`, a free-form record: only the nesting is wrong
    deep = "[" * depth + "]" * depth
    edit_text(folder, lambda text: text.replace('"config": {', '"config": {"deep": ' + deep + ",", 1))
    reseal(folder)
    refused(folder, "manifest.json", "nested too deeply", f"at most {MAX_JSON_DEPTH} levels")
    line = one_line_exit_2(gen("info", folder))
    assert "nested too deeply" in line


def test_an_integer_of_5000_digits_is_refused(bundle_copy):
    folder = bundle_copy("ae")
    edit_text(folder, lambda text: text.replace('"seed": 0', '"seed": 1' + "0" * 4999, 1))
    reseal(folder)
    refused(folder, "manifest.json", "integer of 5,000 digits")
    assert "integer of 5,000 digits" in one_line_exit_2(gen("info", folder))


def test_a_key_given_twice_is_refused_naming_it(bundle_copy):
    folder = bundle_copy("ae")
    edit_text(folder, lambda text: text.replace('"family": "ae",', '"family": "ae",\n  "family": "vae",', 1))
    reseal(folder)  # a tamperer's SHA256SUMS agrees: the manifest itself is refused
    refused(folder, "manifest.json", "key 'family' appears twice")


def test_a_huge_manifest_is_refused_by_its_size(bundle_copy, no_hashing):
    folder = bundle_copy("ae")
    sparse(folder / "manifest.json", MAX_MANIFEST_BYTES + 1)
    refused(folder, "manifest.json", f"{MAX_MANIFEST_BYTES + 1:,} bytes")


# -- graph files: size ------------------------------------------------------------------------

def test_exported_graphs_record_their_size(bundles):
    manifest = json.loads((bundles["ae"] / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION == 9
    for graph in manifest["graphs"].values():
        assert graph["file_bytes"] == (bundles["ae"] / graph["file"]).stat().st_size > 0


@pytest.mark.parametrize("size", [MAX_GRAPH_BYTES + 1, 16 << 30])
def test_a_graph_past_the_protobuf_limit_is_refused_before_hashing(bundle_copy, no_hashing, size):
    folder = bundle_copy("ae")
    sparse(folder / "score.onnx", size)
    refused(folder, "score.onnx", f"{size:,} bytes", f"{MAX_GRAPH_BYTES:,}")


def test_a_graph_of_another_size_than_recorded_is_refused_before_hashing(bundle_copy, no_hashing):
    folder = bundle_copy("ae")
    path = folder / "encoder.onnx"
    recorded = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\0" * 1000)
    refused(folder, "encoder.onnx", f"{recorded + 1000:,} bytes", f"the manifest records {recorded:,}")


def test_format_8_needs_the_sizes_and_format_7_reads_without(bundle_copy):
    folder = bundle_copy("ae")
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["graphs"]["score"]["file_bytes"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    write_digests(folder)
    refused(folder, "missing field 'graphs.score.file_bytes'")
    for graph in manifest["graphs"].values():
        graph.pop("file_bytes", None)
    manifest["format_version"] = 7
    (folder / "manifest.json").write_text(json.dumps(manifest))
    write_digests(folder)
    assert load(folder, device="cpu").manifest.graphs["score"].file_bytes is None


# -- graph files: operators and external data -------------------------------------------------

# (domain, op, attributes): each runs in onnxruntime on float rows (batch, D) and returns (batch, D).
FOREIGN = {"com.microsoft": ("Gelu", {}), "ai.onnx.ml": ("Scaler", {"offset": [0.0], "scale": [1.0]}),
           "evil.ops": ("Steal", {})}


def with_first_node(model, domain: str, op: str, attributes: dict, declare: bool = True):
    """The model with `domain`:`op` applied to input x first (so its inputs and outputs stay the manifest's)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for node in model.graph.node:
        node.input[:] = ["x_foreign" if name == "x" else name for name in node.input]
    model.graph.node.insert(0, helper.make_node(op, ["x"], ["x_foreign"], domain=domain, **attributes))
    if declare:
        model.opset_import.append(helper.make_opsetid(domain, 1))
    return model


@pytest.mark.parametrize("declare", [True, False], ids=["declared", "undeclared"])
@pytest.mark.parametrize("domain", ["com.microsoft", "ai.onnx.ml"])
def test_an_operator_outside_ai_onnx_is_refused_before_onnxruntime_loads_it(bundle_copy, domain, declare):
    import onnxruntime as ort

    folder = bundle_copy("ae")
    op, attributes = FOREIGN[domain]
    model = with_first_node(onnx.load(str(folder / "score.onnx")), domain, op, attributes, declare)
    data = model.SerializeToString()
    ort.InferenceSession(data, providers=["CPUExecutionProvider"])  # onnxruntime itself would run it
    (folder / "score.onnx").write_bytes(data)
    reseal(folder, "score")
    message = refused(folder, "score.onnx", "graph 'score'", f"operator '{op}' of domain '{domain}'",
                      "standard ONNX operators only")
    assert "ai.onnx" in message


def model_with(nodes, initializers=(), functions=(), opsets=(("", 18),)):
    graph = helper.make_graph(list(nodes), "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                             functions=list(functions))


def branch(node):
    return helper.make_graph([node], "branch", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])


def test_foreign_operators_in_subgraphs_and_functions_are_found(tmp_path):
    """Each graph's only foreign operator is inside something a reader of the top-level nodes
    or of opset_import would miss: three subgraphs down, or in the body of a model-local
    function that is itself called from the default domain."""
    inside = helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")
    plain = helper.make_node("Relu", ["x"], ["y"])
    nested = inside
    for _ in range(3):
        nested = helper.make_node("If", ["c"], ["y"], then_branch=branch(plain), else_branch=branch(nested))
    function = helper.make_function("", "Wrap", ["x"], ["y"], [inside],
                                    [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    for model in (model_with([nested]), model_with([helper.make_node("Wrap", ["x"], ["y"])], functions=[function])):
        with pytest.raises(BundleError, match="operator 'Gelu' of domain 'com.microsoft'"):
            check_graph(tmp_path / "g.onnx", "score", model.SerializeToString())
    # the default domain by its name is the default domain
    check_graph(tmp_path / "g.onnx", "score",
                model_with([helper.make_node("Relu", ["x"], ["y"], domain="ai.onnx")]).SerializeToString())


def test_a_graph_gen_cannot_read_is_one_line(tmp_path):
    plain = helper.make_node("Relu", ["x"], ["y"])
    data = model_with([plain]).SerializeToString()
    deep = plain
    for _ in range(20):  # past MAX_GRAPH_NESTING, within what protobuf itself parses
        deep = helper.make_node("If", ["c"], ["y"], then_branch=branch(deep), else_branch=branch(plain))
    # ModelProto.graph (field 7) of 300,000 empty nodes: 600,000 bytes, a varint of 3 bytes
    padded = b"\x3a" + bytes([0x80 | (600_000 & 0x7F), 0x80 | ((600_000 >> 7) & 0x7F), 600_000 >> 14]) \
        + b"\x0a\x00" * 300_000
    for bad, reason in ((data[:-3], "runs past the end|varint"), (b"\xff" * 20, "varint"),
                        (model_with([deep]).SerializeToString(), "nested more than"),
                        (padded, "protobuf fields")):
        with pytest.raises(BundleError, match=f"graph 'score' is not an ONNX model gen reads .*({reason})"):
            check_graph(tmp_path / "g.onnx", "score", bad)


def test_every_graph_gen_exports_passes(bundles):
    """The float graphs of two families here; tests/runtime/test_tamper.py loads every family's
    bundle and tests/exporters/test_quantize.py the int8 and fp16 ones, all through check_graph."""
    for family in ("ae", "gan"):
        for path in bundles[family].glob("*.onnx"):
            check_graph(path, path.stem, path.read_bytes())


def test_a_tensor_in_an_external_file_is_refused_naming_it(bundle_copy, tmp_path):
    folder = bundle_copy("ae")
    model = onnx.load(str(folder / "score.onnx"))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    secret = tmp_path / "secret.bin"
    secret.write_bytes(tensor.raw_data)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", str(secret)), ("offset", "0"), ("length", str(secret.stat().st_size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    (folder / "score.onnx").write_bytes(model.SerializeToString())
    reseal(folder, "score")
    refused(folder, "score.onnx", "graph 'score'", f"tensor {tensor.name!r}", "external data file")


# -- explain and maps on a bundle without per-feature errors ----------------------------------

def test_maps_on_a_gan_bundle_say_what_is_missing_and_who_has_it(bundles, digits_rows, tmp_path):
    rows = tmp_path / "rows.npy"
    np.save(rows, digits_rows[:4])
    line = one_line_exit_2(gen("score", bundles["gan"], rows, "--out", tmp_path / "s.csv",
                               "--maps", tmp_path / "m.png"))
    assert "'gan'" in line and "no per-feature errors" in line and "cannot explain scores or draw anomaly maps" in line
    assert all(family in line for family in RECONSTRUCTION_FAMILIES), line
    assert "format" not in line and "gen 0.2" not in line, line
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "m.png").exists()


def test_an_old_format_reconstruction_bundle_is_told_to_re_export(bundle_copy, digits_rows):
    folder = bundle_copy("ae")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(format_version=2)  # before per-feature errors (format 3) and SHA256SUMS (5)
    manifest["scoring"].pop("errors")
    (folder / "SHA256SUMS").unlink()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(Warning):
        model = load(folder, device="cpu")
    with pytest.raises(NotSupported, match="this bundle is format 2, .* re-export its run folder with gen export"):
        model.explain(digits_rows[:2], 2)


def test_the_reconstruction_families_are_the_registry_s():
    from gen.trainer import registry

    assert set(RECONSTRUCTION_FAMILIES) == {name for name, family in registry.families().items()
                                            if {"reconstruct", "score"} <= set(family.capabilities)}


def test_reading_a_small_file_under_a_large_cap_allocates_only_its_size(tmp_path):
    """read_limited reads what stat gave, not the cap: under a 1.5 GB address-space limit a
    400 kB graph reads where asking for the 2 GiB cap up front raised MemoryError."""
    import subprocess
    import sys

    small = tmp_path / "score.onnx"
    small.write_bytes(b"x" * 400_000)
    code = ("import resource\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))\n"
            "from pathlib import Path\n"
            "from gen.runtime.manifest import read_limited\n"
            f"print(len(read_limited(Path({str(small)!r}), 2**31 - 1, 'graph')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "400000", done.stderr[-500:]
