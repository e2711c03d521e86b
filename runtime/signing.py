"""Bundle signatures with the OpenSSF model-signing library (the format Sigstore and Hugging
Face model repositories use), offline with an elliptic-curve key pair.

`sign_bundle(folder, private_key)` writes `model.sig` into the bundle: a signature over every
other file (manifest.json, SHA256SUMS, the graphs). `verify_signature(folder, public_key)`
checks it, so an edit anywhere, even one that recomputes SHA256SUMS, is refused. Optional:
install `gen[sign]`; the runtime imports the library only when a key is given.

Keys are what model-signing's key signer takes: EC keys on NIST P-256, P-384 or P-521 in PEM
(it has no RSA or Ed25519 signer, and a signature made otherwise would not be model-signing's
format). gen reads a key itself first, at most MAX_KEY_BYTES of it, and refuses any other key
type in one line naming the file, the key's type and what is accepted.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .errors import BundleError, InputError, MissingDependency
from .manifest import check_size, read_limited

SIGNATURE = "model.sig"
PUBLIC_KEY_ENV = "GEN_PUBLIC_KEY"
# A PEM key is a few hundred bytes (an RSA-4096 private key about 3.3 KB); a model.sig of a
# bundle a few KB. Both are refused by their size, before they are read, past these.
MAX_KEY_BYTES = 64 << 10
MAX_SIGNATURE_BYTES = 1 << 20
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
ACCEPTED = "an EC key on P-256, P-384 or P-521 in PEM (the keys model-signing signs with)"


def _library():
    try:
        import model_signing.hashing
        import model_signing.signing
        import model_signing.verifying
    except ImportError:
        raise MissingDependency("bundle signatures need model-signing: pip install 'gen[sign]'") from None
    return model_signing


def _key_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    if not path.is_file():
        raise InputError(f"{path}: {what} is not a regular file")
    return path


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _key_type(key) -> str:
    """A key's algorithm as a user would name it: "EC P-256", "RSA 2048-bit", "Ed25519"."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return f"EC {CURVES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"RSA {key.key_size}-bit"
    if isinstance(key, (dsa.DSAPrivateKey, dsa.DSAPublicKey)):
        return f"DSA {key.key_size}-bit"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "Ed25519"
    if isinstance(key, (ed448.Ed448PrivateKey, ed448.Ed448PublicKey)):
        return "Ed448"
    return type(key).__name__.lstrip("_")


def _load_key(path: str | Path, private: bool, password: str | None = None):
    """Read a PEM key file (refused past MAX_KEY_BYTES before it is read) and return the key,
    refusing anything but what model-signing signs with, in one line naming the file."""
    _library()  # model-signing brings cryptography
    what = "private key" if private else "public key"
    path = _key_file(path, what)
    data = read_limited(path, MAX_KEY_BYTES, what, InputError)
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = (serialization.load_pem_private_key(data, password.encode() if password else None) if private
               else serialization.load_pem_public_key(data))
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        raise InputError(f"{path}: cannot read the {what} ({_one_line(exc)})") from None
    except (ValueError, UnsupportedAlgorithm):
        if (b"PUBLIC KEY-----" if private else b"PRIVATE KEY-----") in data:  # the other half of a pair
            hint = ("it holds a public key; --sign-key takes the private one" if private
                    else "it holds a private key; give its public key (openssl pkey -in KEY -pubout)")
        else:
            hint = f"not a {what} in PEM"
        raise InputError(f"{path}: {hint}; expected {ACCEPTED}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) or key.curve.name not in CURVES:
        raise InputError(f"{path}: {_key_type(key)} {what} is not accepted; bundle signatures take {ACCEPTED}")
    return key


def fingerprint(key) -> str:
    """The SHA-256 of a key's public half (SubjectPublicKeyInfo in PEM), as model-signing
    records it in model.sig (its "hint"): its first 16 hex digits."""
    from cryptography.hazmat.primitives import serialization

    public = key.public_key() if hasattr(key, "public_key") else key
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()[:16]


def check_signing_available(private_key: str | Path, password: str | None = None) -> None:
    """Refuse early: the library is installed and the key file holds a key it signs with."""
    _load_key(private_key, private=True, password=password)


def check_public_key(public_key: str | Path) -> None:
    """Refuse early (before a bundle is read): the library is installed and the key file holds
    a public key it verifies with."""
    _load_key(public_key, private=False)


def sign_bundle(folder: str | Path, private_key: str | Path, password: str | None = None) -> Path:
    """Sign every file of `folder` but the signature itself; return the signature's path."""
    ms = _library()
    folder, key = Path(folder), Path(private_key)
    _load_key(key, private=True, password=password)
    hashing = ms.hashing.Config().set_ignored_paths(paths=[SIGNATURE])
    try:
        ms.signing.Config().set_hashing_config(hashing).use_elliptic_key_signer(
            private_key=key, password=password).sign(folder, folder / SIGNATURE)
    except (ValueError, TypeError, OSError) as exc:  # the key changed since it was checked
        raise InputError(f"{key}: cannot sign with this key ({_one_line(exc)}); expected {ACCEPTED}") from None
    return folder / SIGNATURE


# model-signing says which files differ in one ValueError, "Signature mismatch: [...]", with
# both digests of each file as bytes reprs; the names alone are what a user needs.
_CHANGED = re.compile(r"Hash mismatch for \\?'([A-Za-z0-9._-]+)")
_ADDED_REMOVED = re.compile(r"(Extra|Missing) files (?:found )?in model '[^']*': ([A-Za-z0-9._, -]+)")


def _mismatch(exc: Exception) -> str | None:
    """Why a signature does not match, in words, from model-signing's exception; None when
    model.sig could not be read at all."""
    from cryptography.exceptions import InvalidSignature

    text = str(exc)
    if isinstance(exc, InvalidSignature):
        return f"{SIGNATURE} was altered, or made with another key"
    if not isinstance(exc, ValueError):
        return None
    if text.startswith("Key mismatch"):
        return f"{SIGNATURE} was made with another key"
    if not text.startswith("Signature mismatch"):
        return None
    parts = [f"{'added' if kind == 'Extra' else 'removed'} {names.strip(', ')}"
             for kind, names in _ADDED_REMOVED.findall(text)]
    changed = _CHANGED.findall(text)
    if changed:
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        parts.append("changed " + ", ".join(changed[:5]) + more)
    return "files differ from the ones signed" + (f" ({'; '.join(parts)})" if parts else "")


def verify_signature(folder: str | Path, public_key: str | Path) -> None:
    """Refuse the bundle unless `model.sig` is a valid signature by `public_key` over exactly
    the files the folder holds."""
    folder = Path(folder)
    key = _load_key(public_key, private=False)
    signature = folder / SIGNATURE
    if signature.is_symlink() or not signature.is_file():
        raise BundleError(f"{folder}: not signed ({SIGNATURE} missing) but a public key was given")
    check_size(signature, MAX_SIGNATURE_BYTES, "signature")
    ms = _library()
    try:
        verifier = ms.verifying.Config().use_elliptic_key_verifier(public_key=Path(public_key))
    except (ValueError, TypeError, OSError) as exc:  # the key changed since it was checked
        raise InputError(f"{public_key}: not a usable public key ({_one_line(exc)}); expected {ACCEPTED}") from None
    try:
        verifier.verify(folder, signature)
    except Exception as exc:  # ValueError, cryptography's own types, and what a damaged model.sig raises
        reason = _mismatch(exc)
        if reason is None:
            raise BundleError(f"{signature}: not a readable model-signing signature ({type(exc).__name__}), "
                              f"so the bundle cannot be checked against {public_key}") from None
        raise BundleError(f"{folder}: signature does not match the public key {public_key} "
                          f"(sha256 {fingerprint(key)}...): {reason}") from None


def public_key_from_env(given: str | Path | None) -> str | Path | None:
    """The key given, or $GEN_PUBLIC_KEY when none was (empty means none)."""
    return given if given is not None else (os.environ.get(PUBLIC_KEY_ENV) or None)
