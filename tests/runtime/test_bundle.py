"""A corrupted, tampered, incomplete or too-new bundle is refused whole."""

import json

import pytest

from gen.runtime import FORMAT_VERSION, BundleError, load
from gen.runtime.bundle import write_digests


def edit_manifest(folder, change, reseal: bool = True):
    """Edit manifest.json; with `reseal`, recompute SHA256SUMS as a deliberate tamperer would,
    so that the checks behind the digest are what refuses the bundle."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    if reseal:
        write_digests(folder)


def test_loads_and_lists_capabilities(bundles):
    model = load(bundles["vae"])
    assert model.capabilities == ["sample", "reconstruct", "encode", "score"]
    assert set(model.bundle.sessions) == {"encoder", "decoder", "score", "widen"}


def test_missing_folder(tmp_path):
    with pytest.raises(BundleError, match="bundle folder not found"):
        load(tmp_path / "nope")


def test_folder_without_manifest(tmp_path):
    with pytest.raises(BundleError, match="no manifest.json"):
        load(tmp_path)


def test_manifest_not_json(bundle_copy):
    folder = bundle_copy()
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load(folder)


@pytest.mark.parametrize("reseal", [False, True])
def test_checksum_mismatch(bundle_copy, reseal):
    """Caught by SHA256SUMS; with SHA256SUMS recomputed, by the manifest's own SHA-256."""
    folder = bundle_copy()
    data = bytearray((folder / "decoder.onnx").read_bytes())
    data[-10] ^= 0xFF
    (folder / "decoder.onnx").write_bytes(bytes(data))
    if reseal:
        write_digests(folder)
    message = "decoder.onnx: checksum mismatch" if reseal else "decoder.onnx: SHA-256 differs from SHA256SUMS"
    with pytest.raises(BundleError, match=message):
        load(folder)


@pytest.mark.parametrize("reseal", [False, True])
def test_missing_graph_file(bundle_copy, reseal):
    folder = bundle_copy()
    (folder / "score.onnx").unlink()
    if reseal:
        write_digests(folder)
    message = ("score.onnx: missing bundle file for graph 'score'" if reseal
               else "score.onnx: listed in SHA256SUMS but missing")
    with pytest.raises(BundleError, match=message):
        load(folder)


def test_newer_format_version(bundle_copy):
    folder = bundle_copy()
    edit_manifest(folder, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(BundleError, match=f"format_version {FORMAT_VERSION + 1} is newer"):
        load(folder)


def test_missing_field(bundle_copy):
    folder = bundle_copy()
    edit_manifest(folder, lambda m: m.pop("data"))
    with pytest.raises(BundleError, match="missing field 'data'"):
        load(folder)


@pytest.mark.parametrize("bad", ["../outside.onnx", "/etc/passwd", "sub/../../x.onnx"])
def test_path_outside_bundle(bundle_copy, bad):
    folder = bundle_copy()
    edit_manifest(folder, lambda m: m["graphs"]["decoder"].update(file=bad))
    with pytest.raises(BundleError, match="points outside the bundle"):
        load(folder)


def test_symlink_outside_bundle(bundle_copy, tmp_path):
    folder = bundle_copy()
    outside = tmp_path / "elsewhere.onnx"
    (folder / "decoder.onnx").rename(outside)
    (folder / "decoder.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="points outside the bundle"):
        load(folder)


def test_graph_io_must_match_manifest(bundle_copy):
    folder = bundle_copy()
    edit_manifest(folder, lambda m: m["graphs"]["score"]["inputs"][0].update(dtype="float64"))
    with pytest.raises(BundleError, match=r"score.onnx: graph inputs .* do not match the manifest"):
        load(folder)


def test_swapped_graph_files_are_caught(bundle_copy):
    # Same checksum games: an attacker who swaps files must also fix the manifest's hashes and
    # sizes; then the I/O check still notices the encoder is not a decoder.
    folder = bundle_copy()

    def swap(m):
        m["graphs"]["decoder"]["file"], m["graphs"]["encoder"]["file"] = "encoder.onnx", "decoder.onnx"
        for field in ("sha256", "file_bytes"):
            m["graphs"]["decoder"][field], m["graphs"]["encoder"][field] = (
                m["graphs"]["encoder"][field], m["graphs"]["decoder"][field])

    edit_manifest(folder, swap)
    with pytest.raises(BundleError, match="do not match the manifest"):
        load(folder)


def test_unknown_capability(bundle_copy):
    folder = bundle_copy()
    edit_manifest(folder, lambda m: m["capabilities"].append("teleport"))
    with pytest.raises(BundleError, match="unknown capabilities"):
        load(folder)


def test_capability_without_its_graph(bundle_copy):
    folder = bundle_copy()
    edit_manifest(folder, lambda m: m["graphs"].pop("encoder"))
    with pytest.raises(BundleError, match="capability 'reconstruct' needs a graph 'encoder'"):
        load(folder)


def test_data_shape_must_fit_the_graphs(bundle_copy):
    folder = bundle_copy()
    edit_manifest(folder, lambda m: m["data"].update(shape=[63]))
    with pytest.raises(BundleError, match=r"graph 'encoder' port 'x' has rows of shape \[1, 8, 8\], expected \[63\]"):
        load(folder)


def test_declared_width_must_match_the_onnx_file(bundle_copy):
    folder = bundle_copy("gan")

    def lie(m):  # a consistent manifest that disagrees with the real generator graph
        m["latent"]["dim"] = 5
        m["graphs"]["generator"]["inputs"][0]["shape"] = ["batch", 5]

    edit_manifest(folder, lie)
    with pytest.raises(BundleError, match=r"generator.onnx: graph inputs .* do not match the manifest"):
        load(folder)
