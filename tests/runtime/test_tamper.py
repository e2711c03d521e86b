"""The whole bundle is verified (format 5): for every family of the registry and every file of
a freshly exported bundle, a flipped byte, a deletion, an added sibling and a replacement by a
symbolic link are all refused before anything is served; so are an edited manifest, a
sub-folder, an unlisted file and a bundle of format 5 without SHA256SUMS."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings

import pytest

from gen.runtime import FORMAT_VERSION, BundleError, load
from gen.runtime.errors import GenWarning
from gen.runtime.manifest import DIGESTS
from gen.trainer import registry

FAMILIES = registry.names()


def flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def refused(folder, *patterns) -> str:
    with pytest.raises(BundleError) as info:
        load(folder, device="cpu")
    message = str(info.value)
    assert "\n" not in message and any(p in message for p in patterns), message
    return message


@pytest.mark.parametrize("name", FAMILIES)
def test_every_file_tampered_is_refused(name, bundle_copy, tmp_path):
    pristine = bundle_copy(name)
    assert DIGESTS in {p.name for p in pristine.iterdir()}
    load(pristine, device="cpu")  # the untouched copy loads
    for i, file in enumerate(sorted(p.name for p in pristine.iterdir())):
        cases = {
            "flip": lambda f: flip(f),
            "delete": lambda f: f.unlink(),
            "sibling": lambda f: f.with_name(f.name + ".orig").write_bytes(f.read_bytes()),
            "symlink": lambda f: (shutil.copy(f, tmp_path / f"outside-{i}-{f.name}"), f.unlink(),
                                  f.symlink_to(tmp_path / f"outside-{i}-{f.name}")),
        }
        for case, damage in cases.items():
            folder = tmp_path / f"{case}-{i}"
            shutil.copytree(pristine, folder)
            damage(folder / file)
            refused(folder, file, DIGESTS, "manifest.json")


def test_a_valid_manifest_edit_is_refused(bundle_copy):
    """Values that pass every type check (a threshold nothing reaches, another family)."""
    for change in (lambda m: m["scoring"].update(threshold=1e9), lambda m: m.update(family="vae"),
                   lambda m: m["capabilities"].append("reconstruct") if "reconstruct" not in m["capabilities"]
                   else m["capabilities"].remove("reconstruct")):
        folder = bundle_copy("ae")
        path = folder / "manifest.json"
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        refused(folder, "manifest.json: SHA-256 differs from SHA256SUMS", "manifest.json")
        shutil.rmtree(folder)


def test_subfolder_unlisted_file_and_missing_digests_are_refused(bundle_copy):
    folder = bundle_copy("ae")
    (folder / "extra").mkdir()
    refused(folder, "extra: unexpected folder")
    (folder / "extra").rmdir()
    (folder / "other.onnx").write_bytes((folder / "score.onnx").read_bytes())
    refused(folder, "other.onnx: file not part of the bundle")
    (folder / "other.onnx").unlink()
    (folder / DIGESTS).write_text((folder / DIGESTS).read_text().replace("  score.onnx\n", "  scores.onnx\n"))
    refused(folder, "listed in SHA256SUMS but missing")
    (folder / DIGESTS).write_text("not a digest line\n")
    refused(folder, "SHA256SUMS: line 1")
    (folder / DIGESTS).unlink()
    refused(folder, "SHA256SUMS: missing")


def test_manifest_symlink_is_refused(bundle_copy, tmp_path):
    folder = bundle_copy("ae")
    outside = tmp_path / "elsewhere.json"
    shutil.move(folder / "manifest.json", outside)
    (folder / "manifest.json").symlink_to(outside)
    refused(folder, "manifest.json: symbolic link")


def test_a_format_4_bundle_loads_with_a_warning(bundle_copy):
    folder = bundle_copy("ae")
    path = folder / "manifest.json"
    path.write_text(path.read_text().replace(f'"format_version": {FORMAT_VERSION}', '"format_version": 4'))
    (folder / DIGESTS).unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(folder, device="cpu")
    assert model.manifest.format_version == FORMAT_VERSION
    assert any(issubclass(w.category, GenWarning) and "no SHA256SUMS" in str(w.message) for w in caught)
    (folder / "notes.txt").write_text("x")  # still: nothing but its own files
    refused(folder, "notes.txt: file not part of the bundle")


def test_sha256sum_checks_a_bundle_too(bundles):
    if shutil.which("sha256sum") is None:
        pytest.skip("no sha256sum on this machine")
    result = subprocess.run(["sha256sum", "-c", DIGESTS], cwd=bundles["ae"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.count(": OK") == 5, result.stdout  # 4 graphs + manifest
