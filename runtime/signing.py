"""Bundle signatures with the OpenSSF model-signing library (the format Sigstore and Hugging
Face model repositories use), offline with an elliptic-curve key pair.

`sign_bundle(folder, private_key)` writes `model.sig` into the bundle: a signature over every
other file (manifest.json, SHA256SUMS, the graphs). `verify_signature(folder, public_key)`
checks it, so an edit anywhere, even one that recomputes SHA256SUMS, is refused. Optional:
install `gen[sign]`; the runtime imports the library only when a key is given.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import BundleError, InputError, MissingDependency

SIGNATURE = "model.sig"
PUBLIC_KEY_ENV = "GEN_PUBLIC_KEY"


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
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    return path


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_signing_available(private_key: str | Path) -> None:
    """Refuse early: the library is installed and the key file exists."""
    _library()
    _key_file(private_key, "private key")


def sign_bundle(folder: str | Path, private_key: str | Path, password: str | None = None) -> Path:
    """Sign every file of `folder` but the signature itself; return the signature's path."""
    ms = _library()
    folder, key = Path(folder), _key_file(private_key, "private key")
    hashing = ms.hashing.Config().set_ignored_paths(paths=[SIGNATURE])
    try:
        ms.signing.Config().set_hashing_config(hashing).use_elliptic_key_signer(
            private_key=key, password=password).sign(folder, folder / SIGNATURE)
    except (ValueError, TypeError, OSError) as exc:  # an unreadable or unsupported key
        raise InputError(f"{key}: cannot sign with this key ({_one_line(exc)}); expected an EC private "
                         "key in PEM (P-256, P-384 or P-521)") from None
    return folder / SIGNATURE


def verify_signature(folder: str | Path, public_key: str | Path) -> None:
    """Refuse the bundle unless `model.sig` is a valid signature by `public_key` over exactly
    the files the folder holds."""
    folder = Path(folder)
    key = _key_file(public_key, "public key")
    signature = folder / SIGNATURE
    if signature.is_symlink() or not signature.is_file():
        raise BundleError(f"{folder}: not signed ({SIGNATURE} missing) but a public key was given")
    ms = _library()
    try:
        verifier = ms.verifying.Config().use_elliptic_key_verifier(public_key=key)
    except (ValueError, TypeError, OSError) as exc:
        raise InputError(f"{key}: not a usable EC public key in PEM ({_one_line(exc)})") from None
    try:
        verifier.verify(folder, signature)
    except Exception as exc:  # the library raises ValueError and the key library's own types
        raise BundleError(f"{folder}: signature check failed ({_one_line(exc)[:300]})") from None


def public_key_from_env(given: str | Path | None) -> str | Path | None:
    """The key given, or $GEN_PUBLIC_KEY when none was (empty means none)."""
    return given if given is not None else (os.environ.get(PUBLIC_KEY_ENV) or None)
