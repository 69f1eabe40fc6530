"""``python -m converters keygen``: an Ed25519 key pair for signing bundles, written without clobbering.

    private, public, key_id = write_key_pair("keys/vendor")   # keys/vendor.key.pem, keys/vendor.pub.pem

The private key file is created with mode 0600 (the umask is tightened while it is written) and
belongs on the signing machine only; the public key file goes into a device's trusted keys folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from sdk.errors import FileError
from sdk.files import write_atomically
from sdk.signing import generate_key_pair

PRIVATE_SUFFIX, PUBLIC_SUFFIX = ".key.pem", ".pub.pem"


def write_key_pair(prefix: str | os.PathLike) -> tuple[Path, Path, str]:
    """Write ``prefix.key.pem`` and ``prefix.pub.pem``; neither may exist (FileError).

    Returns (private key path, public key path, key id).
    """
    private_pem, public_pem, key_id = generate_key_pair()
    base = Path(prefix)
    private, public = base.with_name(base.name + PRIVATE_SUFFIX), base.with_name(base.name + PUBLIC_SUFFIX)
    for path in (private, public):
        if path.exists() or path.is_symlink():
            raise FileError(f"{path} already exists: choose another OUT_PREFIX; a key is never overwritten")
    previous = os.umask(0o077)
    try:
        write_atomically(private, lambda file: file.write(private_pem), overwrite=False)
    finally:
        os.umask(previous)
    write_atomically(public, lambda file: file.write(public_pem), overwrite=False)
    return private, public, key_id
