"""Signed bundles: keys (files, folders, $OCTC_TRUSTED_KEYS), keygen and sign, and what a device that
trusts keys refuses. On copies of the frozen fixture bundle (signed by tests/fixtures' test-only key),
with real Ed25519 keys made here."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import phantom
import sdk
from converters.__main__ import main
from sdk import signing
from sdk.bundle import Bundle
from sdk.errors import BundleError, FileError
from tests.bundle_helpers import FIXTURE, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY, copy_fixture

REPO = Path(__file__).resolve().parents[1]
TEST_KEY_ID = "980b73b4c2ab7ba9"  # of tests/fixtures/test-only-signing.pub.pem
SMALL = (32, 248, 128)


@pytest.fixture
def other_key(tmp_path) -> tuple[Path, Path, str]:
    """A second key pair from ``converters keygen``: (private, public, key id)."""
    assert main(["keygen", str(tmp_path / "other")]) == 0
    public = tmp_path / "other.pub.pem"
    return tmp_path / "other.key.pem", public, signing.read_public_key(public).key_id


@pytest.fixture(autouse=True)
def no_keys_from_the_environment(monkeypatch):
    monkeypatch.delenv(signing.ENV_VAR, raising=False)


def test_key_id_is_sha256_of_the_raw_public_key():
    key = serialization.load_pem_public_key(TEST_PUBLIC_KEY.read_bytes())
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert len(raw) == 32 and signing.key_id(raw) == hashlib.sha256(raw).hexdigest()[:16] == TEST_KEY_ID
    assert signing.read_public_key(TEST_PUBLIC_KEY).key_id == TEST_KEY_ID


def test_the_frozen_signature_verifies_with_the_cryptography_library_directly():
    """The signature format, independently of sdk.signing: Ed25519 over context + manifest bytes."""
    record = json.loads((FIXTURE / "manifest.sig").read_text())
    assert record["format"] == "octclassify-signature" and record["algorithm"] == "Ed25519"
    assert record["key_id"] == TEST_KEY_ID
    key = serialization.load_pem_public_key(TEST_PUBLIC_KEY.read_bytes())
    message = b"octclassify bundle manifest v1\n" + (FIXTURE / "manifest.json").read_bytes()
    key.verify(base64.b64decode(record["signature"]), message)  # raises InvalidSignature if not


def test_signed_bundle_with_its_key_loads_and_every_diagnosis_names_the_signer():
    with sdk.Classifier.load(FIXTURE, backend="onnxruntime", trusted_keys=TEST_PUBLIC_KEY) as clf:
        assert clf.bundle.signer == TEST_KEY_ID
        dx = clf.classify(phantom.make_eye("GE", seed=5, shape=SMALL).volume)
    assert dx.signer == TEST_KEY_ID and dx.to_dict()["signer"] == TEST_KEY_ID
    assert dx.to_dict()["bundle_id"] == json.loads((FIXTURE / "manifest.json").read_text())["bundle_id"]


def test_without_keys_any_bundle_loads_and_the_diagnosis_says_unsigned():
    with sdk.Classifier.load(FIXTURE, backend="onnxruntime") as clf:
        dx = clf.classify(phantom.make_eye("GE", seed=5, shape=SMALL).volume)
    assert clf.bundle.signer is None and dx.signer is None and dx.to_dict()["signer"] == "unsigned"


def test_keys_from_a_folder_a_list_and_the_environment(tmp_path, other_key, monkeypatch):
    folder = tmp_path / "keys"
    folder.mkdir()
    (folder / "vendor.pem").write_bytes(TEST_PUBLIC_KEY.read_bytes())
    (folder / "README").write_text("not a key: ignored, it does not end in .pem")
    assert Bundle.load(FIXTURE, trusted_keys=folder).signer == TEST_KEY_ID
    assert Bundle.load(FIXTURE, trusted_keys=[other_key[1], TEST_PUBLIC_KEY]).signer == TEST_KEY_ID
    monkeypatch.setenv(signing.ENV_VAR, os.pathsep.join([str(other_key[1]), str(folder)]))
    assert Bundle.load(FIXTURE).signer == TEST_KEY_ID
    assert (
        Bundle.load(FIXTURE, trusted_keys=()).signer is None
    )  # explicitly none: the environment is not read


def test_configured_keys_never_silently_vanish(tmp_path, monkeypatch):
    monkeypatch.setenv(signing.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(
        BundleError, match=r"trusted key .*missing \(from \$OCTC_TRUSTED_KEYS\) does not exist"
    ):
        Bundle.load(FIXTURE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="holds no .pem public key files"):
        Bundle.load(FIXTURE, trusted_keys=tmp_path / "empty")
    (tmp_path / "bad.pem").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(BundleError, match="bad.pem is not a PEM public key"):
        Bundle.load(FIXTURE, trusted_keys=tmp_path / "bad.pem")
    (tmp_path / "private.pem").write_bytes(TEST_PRIVATE_KEY.read_bytes())
    with pytest.raises(BundleError, match="private.pem is not a PEM public key"):
        Bundle.load(FIXTURE, trusted_keys=tmp_path / "private.pem")
    os.mkfifo(tmp_path / "fifo.pem")
    with pytest.raises(BundleError, match="fifo.pem is not a regular file"):
        signing.read_public_key(tmp_path / "fifo.pem")


def test_unsigned_bundle_is_refused_when_keys_are_configured(tmp_path):
    folder = copy_fixture(tmp_path)
    (folder / "manifest.sig").unlink()
    assert Bundle.load(folder).signer is None
    with pytest.raises(BundleError, match=f"is unsigned, and this device trusts only .*{TEST_KEY_ID}"):
        Bundle.load(folder, trusted_keys=TEST_PUBLIC_KEY)


def test_bundle_signed_by_another_key_is_refused(tmp_path, other_key):
    folder = copy_fixture(tmp_path)
    assert main(["sign", str(folder), "--signing-key", str(other_key[0])]) == 0
    assert Bundle.load(folder, trusted_keys=other_key[1]).signer == other_key[2]
    with pytest.raises(BundleError, match=f"signed by key {other_key[2]}, which this device does not trust"):
        Bundle.load(folder, trusted_keys=TEST_PUBLIC_KEY)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s.replace(s[s.index('"signature": "') + 14 : s.index('"signature": "') + 18], "AAAA"),
            "does not match manifest.json",
        ),
        (lambda s: s.replace("Ed25519", "RSA"), "is not an Ed25519 signature record"),
        (lambda s: "[" * 1000, "is not an Ed25519 signature record"),
        (lambda s: "[" * 100_000, "is 100000 bytes, more than the 4096 allowed"),
        (lambda s: s.replace('"signature": "', '"signature": "!!'), "is not an Ed25519 signature record"),
    ],
)
def test_a_damaged_signature_is_refused(tmp_path, edit, message):
    folder = copy_fixture(tmp_path)
    (folder / "manifest.sig").write_text(edit((folder / "manifest.sig").read_text()))
    with pytest.raises(BundleError, match=message):
        Bundle.load(folder, trusted_keys=TEST_PUBLIC_KEY)


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(tmp_path, capsys):
    assert main(["keygen", str(tmp_path / "vendor")]) == 0
    out = capsys.readouterr().out
    private, public = tmp_path / "vendor.key.pem", tmp_path / "vendor.pub.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert f"key id {signing.read_public_key(public).key_id}" in out
    before = private.read_bytes()
    assert main(["keygen", str(tmp_path / "vendor")]) == 2
    assert "already exists" in capsys.readouterr().err and private.read_bytes() == before
    with pytest.raises(FileError):
        from converters.keys import write_key_pair

        write_key_pair(tmp_path / "vendor")


def test_sign_refuses_a_public_key_or_a_damaged_bundle(tmp_path, capsys):
    folder = copy_fixture(tmp_path)
    assert main(["sign", str(folder), "--signing-key", str(TEST_PUBLIC_KEY)]) == 2
    assert "is not an unencrypted PEM private key" in capsys.readouterr().err
    (folder / "stacker.npz").write_bytes(b"x")
    assert main(["sign", str(folder), "--signing-key", str(TEST_PRIVATE_KEY)]) == 2
    assert "stacker.npz is 1 bytes" in capsys.readouterr().err


def test_verify_checks_the_signature_too(tmp_path, other_key, capsys):
    assert main(["verify", str(FIXTURE), "--trusted-keys", str(TEST_PUBLIC_KEY)]) == 0
    assert f"({TEST_KEY_ID})" in capsys.readouterr().out
    assert main(["verify", str(FIXTURE), "--trusted-keys", str(other_key[1])]) == 2
    assert "which this device does not trust" in capsys.readouterr().err


def test_an_unsigned_bundle_classifies_with_only_numpy_scipy_and_onnxruntime(tmp_path):
    """cryptography is imported only when keys are configured: without it, keys give a clear error."""
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "import sdk, phantom\n"
        "from sdk.errors import BundleError\n"
        f"clf = sdk.Classifier.load({str(FIXTURE)!r}, backend='onnxruntime')\n"
        f"dx = clf.classify(phantom.make_eye('FI', seed=2, shape={SMALL}).volume)\n"
        "assert dx.to_dict()['signer'] == 'unsigned', dx.to_dict()['signer']\n"
        "heavy = [m for m in ('torch', 'onnx', 'cryptography', 'tensorrt') if sys.modules.get(m)]\n"
        "assert not heavy, heavy\n"
        "try:\n"
        f"    sdk.Classifier.load({str(FIXTURE)!r}, trusted_keys={str(TEST_PUBLIC_KEY)!r})\n"
        "except BundleError as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "need the cryptography package" in result.stdout and "octclassify[signing]" in result.stdout
