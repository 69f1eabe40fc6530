"""Bundle signatures: Ed25519 over the exact bytes of manifest.json, and the keys a device trusts.

::

    keys = trusted_keys(None)                       # OCTC_TRUSTED_KEYS, or () when it is unset
    keys = trusted_keys("/etc/octclassify/keys/")   # every *.pem public key in the folder
    signer = verify_manifest(manifest_bytes, signature_bytes, keys, where="bundle/")  # key id or BundleError
    signature_bytes = sign_manifest(manifest_bytes, private_key_pem)               # converters only

Files (docs/BUNDLE.md has the whole story):

* a public key: PEM "PUBLIC KEY" (SubjectPublicKeyInfo) holding an Ed25519 key, as written by
  ``python -m converters keygen`` or ``openssl pkey -pubout``; a folder of keys: its ``*.pem`` files.
* a private key: PEM "PRIVATE KEY" (PKCS #8, unencrypted), mode 0600; it never goes on a device.
* ``manifest.sig`` in the bundle: JSON ``{"format": "octclassify-signature", "algorithm": "Ed25519",
  "key_id": <16 hex>, "signature": <base64 of 64 bytes>}``, the signature over
  ``SIGNED_CONTEXT + manifest.json's bytes``.

The key id is the first 16 hex digits of sha256 of the raw 32-byte Ed25519 public key.

The ``cryptography`` package (the ``signing`` extra) is imported only when a key is read or a
signature made or checked: an unsigned bundle loads without it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sdk.errors import BundleError

ENV_VAR = "OCTC_TRUSTED_KEYS"  # paths of key files or folders, separated by os.pathsep
SIGNATURE_FILE = "manifest.sig"
SIGNATURE_FORMAT = "octclassify-signature"
ALGORITHM = "Ed25519"
SIGNED_CONTEXT = b"octclassify bundle manifest v1\n"  # signed before the manifest bytes
KEY_SUFFIX = ".pem"  # the key files a keys folder contributes
KEY_ID_HEX_DIGITS = 16
MAX_KEY_FILE_BYTES = 16 << 10
MAX_SIGNATURE_FILE_BYTES = 4 << 10
ED25519_SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class TrustedKey:
    """A public key a device trusts: ``key_id`` (16 hex digits), the raw 32-byte key, its file."""

    key_id: str
    raw: bytes
    source: str


def key_id(raw_public_key: bytes) -> str:
    """Key id of a raw 32-byte Ed25519 public key: the first 16 hex digits of its sha256."""
    return hashlib.sha256(raw_public_key).hexdigest()[:KEY_ID_HEX_DIGITS]


def _cryptography():
    """The Ed25519 and serialization modules of ``cryptography``, or BundleError saying how to get it."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as e:
        raise BundleError(
            f"signed bundles need the cryptography package ({e}): pip install 'octclassify[signing]'"
        ) from None
    return ed25519, serialization


def trusted_keys(keys=None) -> tuple[TrustedKey, ...]:
    """The public keys to check bundles against.

    keys : None (then ``$OCTC_TRUSTED_KEYS``: paths separated by os.pathsep; unset or empty means
        no keys), a path of a key file or of a folder of ``*.pem`` key files, or a sequence of such
        paths (an empty sequence means no keys, whatever the environment says).

    Returns the keys (empty: bundles are not checked for a signature). A path that is missing, a
    file that is not an Ed25519 public key, or a folder without keys is a BundleError: keys that
    were asked for never silently vanish.
    """
    paths: list[str | os.PathLike]
    if keys is None:
        value = os.environ.get(ENV_VAR, "")
        paths = [p for p in value.split(os.pathsep) if p]
        origin = f" (from ${ENV_VAR})"
    elif isinstance(keys, (str, os.PathLike)):
        paths, origin = [keys], ""
    elif isinstance(keys, Sequence):
        paths, origin = list(keys), ""
    else:
        raise BundleError(f"trusted_keys must be a path or a sequence of paths, not {type(keys).__name__}")
    found: dict[str, TrustedKey] = {}
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.name.endswith(KEY_SUFFIX) and p.is_file())
            if not files:
                raise BundleError(
                    f"trusted keys folder {path}{origin} holds no {KEY_SUFFIX} public key files"
                )
        elif path.is_file():
            files = [path]
        else:
            raise BundleError(f"trusted key {path}{origin} does not exist")
        for file in files:
            key = read_public_key(file)
            found.setdefault(key.key_id, key)
    return tuple(found.values())


def read_public_key(path: str | os.PathLike) -> TrustedKey:
    """An Ed25519 public key from a PEM file; BundleError naming the file if it is not one."""
    ed25519, serialization = _cryptography()
    data = _read_small(Path(path), MAX_KEY_FILE_BYTES, "trusted key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise BundleError(
            f"trusted key {path} is not a PEM public key ({e}): give the .pub.pem file "
            "'python -m converters keygen' wrote"
        ) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise BundleError(f"trusted key {path} is a {type(key).__name__}, not an Ed25519 public key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return TrustedKey(key_id(raw), raw, os.fspath(path))


def verify_manifest(
    manifest: bytes, signature: bytes | None, keys: Sequence[TrustedKey], where: str
) -> str | None:
    """Check a bundle's signature against the trusted keys.

    manifest : manifest.json's bytes; signature : manifest.sig's bytes, or None if there is none;
    where : the bundle, for messages. Returns the signer's key id, or None when ``keys`` is empty
    (nothing is checked: the bundle counts as unsigned). BundleError when keys are configured and
    the bundle is unsigned, signed by another key, or its signature does not verify.
    """
    if not keys:
        return None
    if signature is None:
        raise BundleError(
            f"bundle {where} is unsigned, and this device trusts only bundles signed by key(s) "
            f"{', '.join(k.key_id for k in keys)}: sign it with 'python -m converters sign'"
        )
    record = parse_signature(signature, where)
    key = next((k for k in keys if k.key_id == record["key_id"]), None)
    if key is None:
        raise BundleError(
            f"bundle {where} is signed by key {record['key_id']}, which this device does not trust "
            f"(trusted: {', '.join(k.key_id for k in keys)})"
        )
    ed25519, _ = _cryptography()
    from cryptography.exceptions import InvalidSignature

    try:
        ed25519.Ed25519PublicKey.from_public_bytes(key.raw).verify(
            record["signature"], SIGNED_CONTEXT + manifest
        )
    except InvalidSignature:
        raise BundleError(
            f"bundle {where}: the signature of key {key.key_id} does not match manifest.json: the "
            "manifest was changed after signing; copy the bundle again"
        ) from None
    return key.key_id


def parse_signature(data: bytes, where: str) -> dict:
    """manifest.sig's fields: {"key_id": str, "signature": 64 bytes}; BundleError if malformed."""
    try:
        record = json.loads(data.decode("utf-8"))
        ok = isinstance(record, dict) and set(record) == {"format", "algorithm", "key_id", "signature"}
        ok = ok and record["format"] == SIGNATURE_FORMAT and record["algorithm"] == ALGORITHM
        ok = ok and isinstance(record["key_id"], str) and isinstance(record["signature"], str)
        raw = base64.b64decode(record["signature"], validate=True) if ok else b""
    except (UnicodeDecodeError, ValueError, binascii.Error, RecursionError):
        ok, raw = False, b""
    if not ok or len(raw) != ED25519_SIGNATURE_BYTES:
        raise BundleError(
            f"bundle {where}: {SIGNATURE_FILE} is not an {ALGORITHM} signature record "
            f"({{format: {SIGNATURE_FORMAT!r}, algorithm, key_id, signature}}): copy the bundle again"
        )
    return {"key_id": record["key_id"], "signature": raw}


def _private_key(private_key_pem: bytes, source: str):
    ed25519, serialization = _cryptography()
    try:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise BundleError(f"{source} is not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BundleError(f"{source} is a {type(key).__name__}, not an Ed25519 private key")
    return key


def read_private_key(path: str | os.PathLike) -> bytes:
    """The PEM bytes of an Ed25519 private key file, checked; BundleError naming the file otherwise."""
    data = _read_small(Path(path), MAX_KEY_FILE_BYTES, "signing key")
    _private_key(data, f"signing key {path}")
    return data


def public_key_of(private_key_pem: bytes) -> TrustedKey:
    """The public half of an Ed25519 private key (PEM), as a :class:`TrustedKey`."""
    _, serialization = _cryptography()
    public = _private_key(private_key_pem, "signing key").public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return TrustedKey(key_id(raw), raw, "signing key")


def sign_manifest(manifest: bytes, private_key_pem: bytes, source: str = "signing key") -> bytes:
    """manifest.sig's bytes for ``manifest`` (manifest.json's bytes), signed with an Ed25519 private key
    in PEM (PKCS #8). BundleError if the key is not one."""
    key = _private_key(private_key_pem, source)
    record = {
        "format": SIGNATURE_FORMAT,
        "algorithm": ALGORITHM,
        "key_id": public_key_of(private_key_pem).key_id,
        "signature": base64.b64encode(key.sign(SIGNED_CONTEXT + manifest)).decode("ascii"),
    }
    return (json.dumps(record, indent=2) + "\n").encode("ascii")


def generate_key_pair() -> tuple[bytes, bytes, str]:
    """A new Ed25519 key pair: (private key PEM, public key PEM, key id)."""
    ed25519, serialization = _cryptography()
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, pem, key_id(raw)


def _read_small(path: Path, limit: int, what: str) -> bytes:
    """A small regular file's bytes (at most ``limit``), BundleError naming it otherwise; a FIFO or
    device is refused without blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise BundleError(f"{what} {path} cannot be read ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BundleError(f"{what} {path} is not a regular file")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise BundleError(f"{what} {path} is larger than {limit} bytes: it is not a key file")
    return data
