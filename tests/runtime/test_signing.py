"""Signed bundles (OpenSSF model-signing, offline EC keys): `gen export --sign-key`, `gen verify
--public-key`, and `--public-key` / $GEN_PUBLIC_KEY on the serving verbs. A signed bundle is
refused after any edit, even one that recomputes SHA256SUMS; an unsigned one, or one signed by
another key, is refused where a key is required."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("model_signing")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from gen.cli.main import app  # noqa: E402
from gen.runtime import BundleError, load  # noqa: E402
from gen.runtime.bundle import write_digests  # noqa: E402
from gen.runtime.signing import SIGNATURE  # noqa: E402

runner = CliRunner()


def gen(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def key_pair(folder, name):
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture(scope="module")
def signed(runs, tmp_path_factory):
    """A bundle exported with --sign-key, its key pair and another pair."""
    folder = tmp_path_factory.mktemp("signed")
    private, public = key_pair(folder, "ours")
    _, other = key_pair(folder, "theirs")
    result = gen("export", runs["ae"], "--out", folder / "B", "--sign-key", private, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["signed"] is True
    return folder / "B", public, other


def copy(bundle, tmp_path):
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(bundle, target)
    return target


def test_a_signed_bundle_verifies_and_serves(signed, digits_rows, tmp_path):
    bundle, public, _ = signed
    assert SIGNATURE in {p.name for p in bundle.iterdir()}
    result = gen("verify", bundle, "--public-key", public)
    assert result.exit_code == 0 and "signature: valid" in result.output, result.output
    load(bundle, public_key=public)
    rows = tmp_path / "rows.npy"
    np.save(rows, digits_rows[:3])
    assert gen("score", bundle, rows, "--out", tmp_path / "s.csv", "--public-key", public).exit_code == 0
    # $GEN_PUBLIC_KEY stands in for the option
    assert gen("sample", bundle, "--n", 2, "--out", tmp_path / "x.npy", env={"GEN_PUBLIC_KEY": str(public)}
               ).exit_code == 0
    # without a key the signature is not checked, and verify says so
    assert "present, not checked" in gen("verify", bundle).output


def test_another_key_is_refused(signed, tmp_path):
    bundle, _, other = signed
    with pytest.raises(BundleError, match="signature does not match the public key"):
        load(bundle, public_key=other)
    result = gen("sample", bundle, "--n", 2, "--out", tmp_path / "x.npy", env={"GEN_PUBLIC_KEY": str(other)})
    assert result.exit_code == 2 and result.output.startswith("error: ") and not (tmp_path / "x.npy").exists()


def test_an_edit_that_recomputes_every_digest_is_refused(signed, tmp_path):
    bundle, public, _ = signed
    folder = copy(bundle, tmp_path)
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["scoring"]["threshold"] = 1e9
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    write_digests(folder)  # SHA256SUMS agrees again ...
    load(folder)  # ... so an unsigned check cannot tell; the signature does
    with pytest.raises(BundleError, match="signature does not match the public key"):
        load(folder, public_key=public)


def test_write_digests_leaves_the_signature_out(signed, tmp_path):
    bundle, public, _ = signed
    folder = copy(bundle, tmp_path)
    (folder / "SHA256SUMS").unlink()
    write_digests(folder)
    assert SIGNATURE not in (folder / "SHA256SUMS").read_text()
    load(folder, public_key=public)


def test_unsigned_bundle_is_refused_when_a_key_is_required(bundles, signed, tmp_path):
    _, public, _ = signed
    with pytest.raises(BundleError, match="not signed"):
        load(bundles["ae"], public_key=public)
    result = gen("verify", bundles["ae"], "--public-key", public)
    assert result.exit_code == 2 and "not signed" in result.output


def test_signature_file_edits_and_bad_keys(signed, tmp_path):
    bundle, public, _ = signed
    folder = copy(bundle, tmp_path)
    data = bytearray((folder / SIGNATURE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / SIGNATURE).write_bytes(bytes(data))
    with pytest.raises(BundleError):
        load(folder, public_key=public)
    not_a_key = tmp_path / "junk.pem"
    not_a_key.write_text("not a key")
    result = gen("verify", bundle, "--public-key", not_a_key)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    result = gen("verify", bundle, "--public-key", tmp_path / "missing.pem")
    assert result.exit_code == 2 and "public key not found" in result.output
