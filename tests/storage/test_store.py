"""ResultStore against a real S3 API (moto_server on loopback): uploads, presigned URLs, history, cache, purge."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from avatar_driver.paths import REPO_ROOT
from tools.images import astronaut, encode
from worker.storage import DEFAULT_PREFIX, ResultStore, StorageError, user_segment

PNG = encode(astronaut()[:64, :64])
PARAMS = {"seed": 42, "steps": 4, "cfg": 7.0, "prompt": "a portrait"}
MODELS = {"sdxl.safetensors": "ab" * 32}


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def test_put_result_uploads_under_user_day_job_and_the_presigned_url_serves_it(store):
    day = today()
    obj = store.put_result(PNG, "job-1", "alice", "png", metadata={"width": 64, "seed": 42})

    assert obj.key in (f"avatars/alice/{day}/job-1.png", f"avatars/alice/{today()}/job-1.png")
    resp = requests.get(obj.url, timeout=10)
    assert resp.status_code == 200
    assert resp.content == PNG
    assert resp.headers["Content-Type"] == "image/png"
    assert "X-Amz-Signature=" in obj.url and "X-Amz-Expires=600" in obj.url
    head = store._client.head_object(Bucket=store.config.bucket, Key=obj.key)
    assert head["Metadata"] == {"format": "png", "width": "64", "seed": "42"}


def test_anonymous_results_go_under_anon_and_other_formats_keep_their_extension(store):
    obj = store.put_result(b"\xff\xd8\xff fake jpeg", "job-2", None, "jpeg")
    assert obj.key.startswith("avatars/anon/") and obj.key.endswith("/job-2.jpg")
    assert requests.get(obj.url, timeout=10).headers["Content-Type"] == "image/jpeg"
    with pytest.raises(StorageError, match="unknown result format 'gif'"):
        store.put_result(PNG, "job-3", None, "gif")


@pytest.mark.parametrize("user", ["../../etc", "a/b", "..", ".hidden", "cache", "anon", "ANON", "x" * 200, "é"])
def test_user_ids_cannot_escape_or_share_a_folder(store, user):
    segment = user_segment(user)
    assert "/" not in segment and ".." not in segment
    assert segment.startswith("_")  # hashed: no safe id starts with "_"
    assert segment != user_segment(user + "x")
    obj = store.put_result(PNG, "../job", user, "png")
    parts = obj.key.split("/")
    assert parts[:2] == ["avatars", segment] and len(parts) == 4
    assert parts[3].startswith("_") and parts[3].endswith(".png")


def test_safe_user_ids_are_kept_readable():
    assert user_segment("alice") == "alice"
    assert user_segment("0xAbC.eth_1-2") == "0xAbC.eth_1-2"
    assert user_segment(None) == user_segment("") == "anon"
    assert user_segment("a/b") != user_segment("a_b")


def test_history_lists_a_users_results_newest_first_up_to_limit(store):
    client, bucket = store._client, store.config.bucket
    # Older days written directly (put_result always uses today); key order inside a day is the reverse of time.
    client.put_object(Bucket=bucket, Key="avatars/bob/2024-01-01/old.png", Body=PNG)
    client.put_object(Bucket=bucket, Key="avatars/bob/2024-03-05/z-first.png", Body=PNG)
    time.sleep(1.1)  # S3 listings give LastModified to the second
    client.put_object(Bucket=bucket, Key="avatars/bob/2024-03-05/a-second.png", Body=PNG)
    newest = store.put_result(PNG, "today", "bob")
    store.put_result(PNG, "carols", "carol")
    store.put_result(PNG, "anons", None)

    keys = [obj.key for obj in store.history("bob", limit=10)]
    assert keys == [newest.key, "avatars/bob/2024-03-05/a-second.png", "avatars/bob/2024-03-05/z-first.png",
                    "avatars/bob/2024-01-01/old.png"]
    limited = store.history("bob", limit=2)
    assert [obj.key for obj in limited] == keys[:2]
    assert requests.get(limited[1].url, timeout=10).content == PNG
    assert limited[0].size == len(PNG) and limited[0].last_modified is not None
    assert [obj.key for obj in store.history("carol")] == [store.history("carol")[0].key]
    assert store.history("nobody") == []
    with pytest.raises(ValueError, match="needs a user id"):
        store.history(None)


def test_cache_miss_then_put_then_hit_returns_bytes_metadata_and_url(store):
    key = store.cache_key(encode(astronaut()), PARAMS, "v1", MODELS)
    assert store.cache_get(key) is None

    meta = {"width": 64, "height": 64, "seed": 42, "workflow_version": "v1"}
    stored = store.put_result(PNG, "job-9", "dave", "png", metadata=meta)
    store.cache_put(key, stored)
    hit = store.cache_get(key)

    assert hit is not None
    assert hit.data == PNG
    assert hit.metadata == {"format": "png", **meta}
    assert hit.key == f"avatars/cache/{key}.png"
    assert requests.get(hit.url, timeout=10).content == PNG
    # The cache is not a user: it never shows up in anybody's history.
    assert [obj.key for obj in store.history("dave")] == [stored.key]
    assert store.history("cache") == []


def test_a_cache_entry_without_its_image_is_a_miss(store):
    key = "0" * 64
    store.cache_put(key, store.put_result(PNG, "job", "erin"))
    store._client.delete_object(Bucket=store.config.bucket, Key=f"avatars/cache/{key}.png")
    assert store.cache_get(key) is None
    with pytest.raises(ValueError, match="64 lowercase hex"):
        store.cache_get("../../secret")


def test_purge_deletes_only_what_is_older_than_the_cutoff_under_the_prefix(store):
    key = "1" * 64
    store.cache_put(key, store.put_result(PNG, "job", "frank"))
    store.put_result(PNG, "job2", None)
    store._client.put_object(Bucket=store.config.bucket, Key="other-app/keep.png", Body=PNG)

    assert store.purge(1) == 0
    assert len(store.history("frank")) == 1
    assert store.purge(1, now=datetime.now(UTC) + timedelta(days=2)) == 4  # 2 results, cache png + json
    assert store.history("frank") == [] and store.cache_get(key) is None
    remaining = store._client.list_objects_v2(Bucket=store.config.bucket)["Contents"]
    assert [obj["Key"] for obj in remaining] == ["other-app/keep.png"]


def test_purge_cli_uses_the_env_and_dry_run_deletes_nothing(store, storage_config, tmp_path):
    store.put_result(PNG, "job", "gina")
    store.put_result(PNG, "job2", "gina")
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "STORAGE_BUCKET": storage_config.bucket,
        "STORAGE_ENDPOINT_URL": storage_config.endpoint_url, "STORAGE_ACCESS_KEY_ID": "test-key-id",
        "STORAGE_SECRET_ACCESS_KEY": "test-secret", "STORAGE_PREFIX": "avatars",
    }
    time.sleep(1.1)  # LastModified has second resolution: make "older than 0 days" true for both

    def purge(*args):
        return subprocess.run([sys.executable, "-m", "worker.storage", "purge", *args], env=env,
                              capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)

    dry = purge("--days", "0", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "2 objects older than 0 days under avatars/ would be deleted" in dry.stdout
    assert len(store.history("gina")) == 2
    kept = purge("--days", "30")
    assert kept.returncode == 0 and "deleted 0 objects" in kept.stdout
    done = purge("--days", "0")
    assert done.returncode == 0 and "deleted 2 objects" in done.stdout
    assert store.history("gina") == []


def test_from_env_reads_the_contract_variables(monkeypatch):
    assert ResultStore.from_env({}) is None
    store = ResultStore.from_env({
        "STORAGE_BUCKET": "b", "STORAGE_ENDPOINT_URL": "https://acct.r2.cloudflarestorage.com",
        "STORAGE_ACCESS_KEY_ID": "k", "STORAGE_SECRET_ACCESS_KEY": "s", "STORAGE_REGION": "auto",
        "STORAGE_PREFIX": "/prod/avatars/", "STORAGE_URL_TTL": "120", "STORAGE_ADDRESSING_STYLE": "path",
    })
    assert (store.config.bucket, store.config.region, store.config.prefix, store.config.url_ttl) == (
        "b", "auto", "prod/avatars", 120)
    assert store.presign("x.png").startswith("https://acct.r2.cloudflarestorage.com/b/x.png?")
    for env, message in [({"STORAGE_URL_TTL": "soon"}, "whole number"),
                         ({"STORAGE_URL_TTL": "9999999"}, "between 1 and"),
                         ({"STORAGE_ADDRESSING_STYLE": "dns"}, "one of auto, path, virtual"),
                         ({"STORAGE_PREFIX": "a/../b"}, "STORAGE_PREFIX")]:
        with pytest.raises(StorageError, match=message):
            ResultStore.from_env({"STORAGE_BUCKET": "b", **env})


def test_the_documented_lifecycle_rule_is_accepted_by_s3_and_covers_the_default_prefix(store):
    doc = (REPO_ROOT / "docs" / "storage.md").read_text()
    rule_json = re.search(r"`lifecycle.json`:\s*```json\n(.*?)```", doc, re.S).group(1)
    config = json.loads(rule_json)
    store._client.put_bucket_lifecycle_configuration(Bucket=store.config.bucket, LifecycleConfiguration=config)
    rules = store._client.get_bucket_lifecycle_configuration(Bucket=store.config.bucket)["Rules"]
    assert rules[0]["Filter"]["Prefix"] == f"{DEFAULT_PREFIX}/"
    assert rules[0]["Expiration"]["Days"] == 30 and rules[0]["Status"] == "Enabled"
