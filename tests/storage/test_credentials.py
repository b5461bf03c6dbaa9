"""Bad, missing or leaked credentials: a clear StorageError, and no secret in messages, reprs or logs."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from avatar_driver.process import free_port
from tools.images import astronaut, encode
from worker.storage import ResultStore, StorageError

PNG = encode(astronaut()[:32, :32])


@pytest.fixture(scope="module")
def iam_key(moto) -> tuple[str, str]:
    return moto.iam_credentials()


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


def test_wrong_secret_or_unknown_key_is_a_clear_error_while_the_real_key_works(moto, storage_config, iam_key, caplog):
    key_id, secret = iam_key
    good = ResultStore(replace(storage_config, access_key_id=key_id, secret_access_key=secret))
    wrong_secret = "wrong" + secret[5:]
    bad_secret = ResultStore(replace(storage_config, access_key_id=key_id, secret_access_key=wrong_secret))
    bad_key = ResultStore(replace(storage_config, access_key_id="AKIAUNKNOWNKEY000000", secret_access_key=secret))
    caplog.set_level(logging.DEBUG)

    with moto.enforce_auth():
        stored = good.put_result(PNG, "job", "alice")  # the control: auth is on and a valid key passes
        assert [obj.key for obj in good.history("alice")] == [stored.key]
        errors = {}
        for name, store in [("signature", bad_secret), ("key", bad_key)]:
            for call in (lambda s=store: s.put_result(PNG, "job", "alice"), lambda s=store: s.history("alice"),
                         lambda s=store: s.cache_get("0" * 64)):
                with pytest.raises(StorageError) as err:
                    call()
                errors.setdefault(name, []).append(str(err.value))

    assert "(SignatureDoesNotMatch) trying to upload the result" in errors["signature"][0]
    assert "(InvalidAccessKeyId) trying to upload the result" in errors["key"][0]
    for message in errors["signature"] + errors["key"]:
        assert message.startswith("storage rejected the credentials")
        assert "check STORAGE_ACCESS_KEY_ID and STORAGE_SECRET_ACCESS_KEY" in message
        assert storage_config.bucket in message
        assert_no_secret(message, secret, wrong_secret, key_id, "AKIAUNKNOWNKEY000000")

    # botocore's DEBUG records carry the Authorization header (key id, signature) but never the secret;
    # nothing at INFO and above, and nothing from this module at any level, names the key either.
    for record in caplog.records:
        text = record.getMessage()
        assert_no_secret(text, secret, wrong_secret)
        if record.levelno >= logging.INFO or record.name.startswith("worker"):
            assert_no_secret(text, key_id, "AKIAUNKNOWNKEY000000", "X-Amz-Signature")


def test_no_credentials_anywhere_is_a_clear_error(storage_config, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = ResultStore(replace(storage_config, access_key_id=None, secret_access_key=None))
    with pytest.raises(StorageError, match="no storage credentials to upload the result: set STORAGE_ACCESS_KEY_ID"):
        store.put_result(PNG, "job", "alice")


def test_missing_bucket_and_unreachable_endpoint_are_named(storage_config):
    with pytest.raises(StorageError, match=r"bucket 'no-such-bucket' does not exist at http://127\.0\.0\.1:\d+"):
        ResultStore(replace(storage_config, bucket="no-such-bucket")).put_result(PNG, "job", None)
    port = free_port()  # nothing listens there
    store = ResultStore(replace(storage_config, endpoint_url=f"http://user:{storage_config.secret_access_key}"
                                                             f"@127.0.0.1:{port}"))
    with pytest.raises(StorageError) as err:
        store.cache_get("0" * 64)
    assert str(err.value) == f"cannot reach the storage endpoint http://127.0.0.1:{port} to read the cache " \
                             "(STORAGE_ENDPOINT_URL)"
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_reprs_hold_no_secret_and_no_signed_url(store):
    stored = store.put_result(PNG, "job", "alice")
    for text in (repr(store), repr(store.config), repr(stored)):
        assert_no_secret(text, "test-secret", "test-key-id", "X-Amz-Signature")
    assert stored.key in repr(stored)
