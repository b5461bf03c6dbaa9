"""Results in S3 or Cloudflare R2: upload with presigned URLs, per-user history, a result cache, retention.

Layout in the bucket, under ``STORAGE_PREFIX`` (so one bucket can serve several deployments)::

    <prefix>/<user-or-anon>/<YYYY-MM-DD>/<job>.<ext>    results, UTC date; history() lists them newest first
    <prefix>/cache/<sha256>.<ext>                       cached results, keyed by cache_key()
    <prefix>/cache/<sha256>.json                        the entry's metadata, written last: it marks the entry complete
    <prefix>/events/day=<YYYY-MM-DD>/<time>-<job>.jsonl  one analytics event per job (worker/analytics.py)

Every failure of the store is a ``StorageError`` whose message says what to fix and never holds a
credential, a presigned URL or botocore's own text. Retention: docs/storage.md (lifecycle rule) and
``python -m worker.storage purge --days N``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "ethmumbai-avatar"
DEFAULT_URL_TTL = 3600
MAX_URL_TTL = 7 * 24 * 3600  # SigV4 presigned URLs cannot outlive a week
ADDRESSING_STYLES = ("auto", "path", "virtual")
ANON = "anon"
CACHE_DIR = "cache"
EVENTS_DIR = "events"

EXTENSIONS = {"png": "png", "webp": "webp", "jpeg": "jpg"}
CONTENT_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}

# Job fields that do not change the pixels; a caller passing the whole job input still gets one key per result.
NON_PIXEL_FIELDS = frozenset({"image", "return", "user", "workflow_version"})

_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CACHE_KEY = re.compile(r"[0-9a-f]{64}")
_RESERVED_USERS = frozenset({ANON, CACHE_DIR, EVENTS_DIR})
_CREDENTIAL_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken",
    "AuthorizationHeaderMalformed", "Unauthorized", "401", "403",
})
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class StorageError(Exception):
    """The result store failed; the message is safe to log and to return to the client."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    url: str = field(repr=False)  # presigned: it names the access key id and carries a signature
    data: bytes | None = field(default=None, repr=False)
    metadata: Mapping = field(default_factory=dict)
    last_modified: datetime | None = None
    size: int | None = None


@dataclass(frozen=True)
class StorageConfig:
    bucket: str
    endpoint_url: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    region: str = "us-east-1"
    prefix: str = DEFAULT_PREFIX
    url_ttl: int = DEFAULT_URL_TTL
    addressing_style: str = "auto"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> StorageConfig | None:
        """None when ``STORAGE_BUCKET`` is unset; unset keys fall back to boto3's chain (AWS_* env, IAM role)."""
        bucket = environ.get("STORAGE_BUCKET", "").strip()
        if not bucket:
            return None
        ttl_text = environ.get("STORAGE_URL_TTL", "").strip() or str(DEFAULT_URL_TTL)
        try:
            ttl = int(ttl_text)
        except ValueError:
            raise StorageError(f"STORAGE_URL_TTL must be a whole number of seconds, got {ttl_text!r}") from None
        config = cls(
            bucket=bucket,
            endpoint_url=environ.get("STORAGE_ENDPOINT_URL") or None,
            access_key_id=environ.get("STORAGE_ACCESS_KEY_ID") or None,
            secret_access_key=environ.get("STORAGE_SECRET_ACCESS_KEY") or None,
            region=environ.get("STORAGE_REGION") or "us-east-1",
            prefix=environ.get("STORAGE_PREFIX", "").strip("/") or DEFAULT_PREFIX,
            url_ttl=ttl,
            addressing_style=environ.get("STORAGE_ADDRESSING_STYLE") or "auto",
        )
        config.validate()
        return config

    def validate(self) -> None:
        if not 1 <= self.url_ttl <= MAX_URL_TTL:
            raise StorageError(f"STORAGE_URL_TTL must be between 1 and {MAX_URL_TTL} seconds, got {self.url_ttl}")
        if self.addressing_style not in ADDRESSING_STYLES:
            raise StorageError(
                f"STORAGE_ADDRESSING_STYLE must be one of {', '.join(ADDRESSING_STYLES)}, got {self.addressing_style!r}"
            )
        if not all(_SAFE_SEGMENT.fullmatch(part) for part in self.prefix.split("/")):
            raise StorageError(f"STORAGE_PREFIX {self.prefix!r} must be /-separated names of [A-Za-z0-9._-]")

    @property
    def endpoint_label(self) -> str:
        """The endpoint for messages: scheme, host and port only (a URL may carry user:password)."""
        if not self.endpoint_url:
            return f"AWS S3 ({self.region})"
        parts = urlsplit(self.endpoint_url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


# ---------------------------------------------------------------- keys


def safe_segment(name: str) -> str:
    """A key segment that cannot traverse or collide: safe names as they are, anything else hashed.

    Hashed names start with ``_``, which a safe name cannot, so ``"a/b"`` never lands on ``"a_b"``.
    """
    if _SAFE_SEGMENT.fullmatch(name) and ".." not in name:
        return name
    return "_" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]


def user_segment(user: str | None) -> str:
    """``anon`` for no user; the reserved names themselves are hashed so no user can read the cache or anon folders."""
    if not user:
        return ANON
    if user.lower() in _RESERVED_USERS:
        return "_" + hashlib.sha256(user.encode("utf-8")).hexdigest()[:32]
    return safe_segment(user)


def normalized_pixels_digest(image: bytes | str) -> str:
    """sha256 of the decoded, EXIF-oriented pixels, so a lossless re-encode of the same photo gives the same digest.

    Uses the node pack's own decoder (the exact pixels the workflow sees). ``image`` is the file's
    bytes or the job's base64 / data URI text. Raises ``EthMumbaiError`` for what the workflow would refuse.
    """
    # Imported here: the pack's decoder pulls in torch, which the purge CLI and history never need.
    # The limits are the load node's defaults: the cache never decodes more than the workflow would.
    from custom_nodes.ethmumbai.core.image_io import (
        MAX_IMAGE_BYTES,
        MAX_IMAGE_PIXELS,
        decode_base64,
        open_image,
        to_rgb_and_alpha,
    )

    data = decode_base64(image, MAX_IMAGE_BYTES) if isinstance(image, str) else image
    rgb, alpha = to_rgb_and_alpha(open_image(data, MAX_IMAGE_PIXELS))
    digest = hashlib.sha256(repr(tuple(rgb.shape)).encode())
    digest.update(rgb.numpy().tobytes())
    if alpha is not None and not bool((alpha == 1).all()):  # opaque alpha = the all-ones mask of an RGB file
        digest.update(b"alpha")
        digest.update(alpha.numpy().tobytes())
    return digest.hexdigest()


def _canonical(value):
    """Integral floats as ints (``7`` and ``7.0`` are the same cfg to ComfyUI), containers recursively."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def cache_key(image_bytes: bytes | str, params: Mapping, workflow_version: str, model_hashes: Mapping) -> str:
    """sha256 over the normalized input pixels, the canonical params, the workflow version and the model hashes.

    ``params`` should be the resolved generation params (defaults filled in), so that leaving a
    param out and sending its default give one key.
    """
    document = {
        "image": normalized_pixels_digest(image_bytes),
        "params": _canonical({k: v for k, v in params.items() if k not in NON_PIXEL_FIELDS}),
        "workflow_version": workflow_version,
        "models": _canonical(dict(model_hashes)),
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- the store


class ResultStore:
    """One bucket and prefix. Thin: every method is one or two S3 calls behind ``_errors``."""

    cache_key = staticmethod(cache_key)

    def __init__(self, config: StorageConfig):
        config.validate()
        self.config = config
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=config.endpoint_url,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            region_name=config.region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": config.addressing_style},
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 3, "mode": "standard"},
                # R2 and other S3-compatible stores reject the newer default checksum headers.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def __repr__(self) -> str:
        return f"ResultStore(bucket={self.config.bucket!r}, prefix={self.config.prefix!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ResultStore | None:
        config = StorageConfig.from_env(environ)
        return cls(config) if config else None

    # ---- results and history

    def put_result(self, png: bytes, job_id: str, user: str | None = None, fmt: str = "png",
                   metadata: Mapping | None = None) -> StoredObject:
        """Upload under ``<prefix>/<user-or-anon>/<UTC date>/<job>.<ext>``; ``metadata`` (small, ASCII) goes with it."""
        if fmt not in EXTENSIONS:
            raise StorageError(f"unknown result format {fmt!r}: expected one of {', '.join(EXTENSIONS)}")
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        key = self._key(user_segment(user), day, f"{safe_segment(job_id)}.{EXTENSIONS[fmt]}")
        meta = {"format": fmt, **(metadata or {})}
        with self._errors("upload the result"):
            self._client.put_object(
                Bucket=self.config.bucket, Key=key, Body=png, ContentType=CONTENT_TYPES[fmt],
                Metadata={str(k): str(v) for k, v in meta.items()},
            )
        log.info("stored result %s (%d bytes)", key, len(png))
        return StoredObject(key=key, url=self.presign(key), metadata=meta, size=len(png))

    def history(self, user: str, limit: int = 20) -> list[StoredObject]:
        """A user's results, newest first, at most ``limit``; reads only as many day folders as it needs."""
        if not user:
            raise ValueError("history needs a user id: anonymous results are shared and never listed")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        base = self._key(user_segment(user)) + "/"
        results: list[StoredObject] = []
        with self._errors("list the history"):
            days = sorted(self._list(base, delimiter="/", part="CommonPrefixes"), key=lambda p: p["Prefix"],
                          reverse=True)
            for day in days:
                objects = sorted(self._list(day["Prefix"]), key=lambda o: (o["LastModified"], o["Key"]), reverse=True)
                for obj in objects[:limit - len(results)]:
                    results.append(StoredObject(key=obj["Key"], url=self.presign(obj["Key"]),
                                                last_modified=obj["LastModified"], size=obj["Size"]))
                if len(results) >= limit:
                    break
        return results

    def presign(self, key: str) -> str:
        with self._errors("sign a download URL"):
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.config.bucket, "Key": key}, ExpiresIn=self.config.url_ttl,
            )

    # ---- cache

    def cache_get(self, key: str) -> StoredObject | None:
        """The cached result (bytes, metadata, presigned URL), or None on a miss or a half-purged entry."""
        with self._errors("read the cache"):
            entry = self._get(self._cache_meta_key(key))
            if entry is None:
                return None
            meta = json.loads(entry)
            data_key = self._cache_data_key(key, meta["format"])
            data = self._get(data_key)
        if data is None:
            return None
        log.info("cache hit %s", key)
        return StoredObject(key=data_key, url=self.presign(data_key), data=data, metadata=meta["metadata"],
                            size=len(data))

    def cache_put(self, key: str, obj: StoredObject, extra: Mapping | None = None) -> StoredObject:
        """Make a stored result (from ``put_result``) the cache entry for ``key``: a server-side copy, no re-upload.
        ``extra`` (JSON values, e.g. the face report) joins the entry's metadata, which ``cache_get`` returns."""
        fmt = obj.metadata.get("format", "png")
        meta_key, data_key = self._cache_meta_key(key), self._cache_data_key(key, fmt)
        entry = json.dumps({"format": fmt, "metadata": {**obj.metadata, **(extra or {})},
                            "created": datetime.now(UTC).isoformat(timespec="seconds")})
        with self._errors("write the cache"):
            self._client.copy_object(Bucket=self.config.bucket, Key=data_key,
                                     CopySource={"Bucket": self.config.bucket, "Key": obj.key})
            self._client.put_object(Bucket=self.config.bucket, Key=meta_key, Body=entry.encode(),
                                    ContentType="application/json")
        return StoredObject(key=data_key, url=self.presign(data_key), metadata=obj.metadata, size=obj.size)

    # ---- analytics events

    def put_event(self, line: str, job_id: str, at: datetime) -> str:
        """Store one job's event (a JSON line) under its UTC day: one object per job, so workers never contend."""
        day, stamp = at.astimezone(UTC).strftime("%Y-%m-%d"), at.astimezone(UTC).strftime("%H%M%S%f")
        key = self._key(EVENTS_DIR, f"day={day}", f"{stamp}-{safe_segment(job_id)}.jsonl")
        with self._errors("write an analytics event"):
            self._client.put_object(Bucket=self.config.bucket, Key=key, Body=line.encode() + b"\n",
                                    ContentType="application/x-ndjson")
        return key

    def event_lines(self, since: datetime) -> Iterator[str]:
        """Every event line of the UTC days from ``since``'s day on (the caller filters by the events' own time)."""
        base = self._key(EVENTS_DIR) + "/"
        first = f"{base}day={since.astimezone(UTC):%Y-%m-%d}/"
        with self._errors("read analytics events"):
            days = sorted(p["Prefix"] for p in self._list(base, delimiter="/", part="CommonPrefixes"))
            for day in (d for d in days if d >= first):
                for obj in self._list(day):
                    yield from (self._get(obj["Key"]) or b"").decode().splitlines()

    # ---- retention

    def expired(self, older_than_days: float, now: datetime | None = None) -> Iterator[str]:
        """Keys under the prefix (results and cache) last modified more than ``older_than_days`` before ``now``."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
        with self._errors("list objects for the purge"):
            for obj in self._list(self._key() + "/"):
                if obj["LastModified"] < cutoff:
                    yield obj["Key"]

    def purge(self, older_than_days: float, now: datetime | None = None) -> int:
        """Delete what ``expired`` yields, 1000 keys a request (the S3 limit); returns how many were deleted."""
        keys = list(self.expired(older_than_days, now))
        with self._errors("delete expired objects"):
            for start in range(0, len(keys), 1000):
                batch = [{"Key": key} for key in keys[start:start + 1000]]
                resp = self._client.delete_objects(Bucket=self.config.bucket,
                                                   Delete={"Objects": batch, "Quiet": True})
                if resp.get("Errors"):
                    first = resp["Errors"][0]
                    raise StorageError(f"could not delete {len(resp['Errors'])} objects, e.g. {first['Key']} "
                                       f"({first.get('Code')})")
        log.info("purged %d objects older than %s days under %s/", len(keys), older_than_days, self.config.prefix)
        return len(keys)

    # ---- plumbing

    def _key(self, *parts: str) -> str:
        return "/".join((self.config.prefix, *parts))

    def _cache_meta_key(self, key: str) -> str:
        if not _CACHE_KEY.fullmatch(key):
            raise ValueError("a cache key is 64 lowercase hex digits (from cache_key())")
        return self._key(CACHE_DIR, f"{key}.json")

    def _cache_data_key(self, key: str, fmt: str) -> str:
        if fmt not in EXTENSIONS:
            raise StorageError(f"cache entry {key} names an unknown format {fmt!r}")
        return self._key(CACHE_DIR, f"{key}.{EXTENSIONS[fmt]}")

    def _get(self, key: str) -> bytes | None:
        try:
            return self._client.get_object(Bucket=self.config.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return None
            raise

    def _list(self, prefix: str, delimiter: str = "", part: str = "Contents") -> Iterator[dict]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.config.bucket, Prefix=prefix, Delimiter=delimiter,
        )
        for page in pages:
            yield from page.get(part, [])

    @contextmanager
    def _errors(self, action: str):
        """botocore's exceptions to ``StorageError`` with our own text (``from None``: theirs may echo request data)."""
        bucket, endpoint = self.config.bucket, self.config.endpoint_label
        try:
            yield
        except ClientError as exc:
            code = _error_code(exc)
            if code in _CREDENTIAL_CODES:
                message = (f"storage rejected the credentials ({code}) trying to {action} in bucket {bucket!r} at "
                           f"{endpoint}: check STORAGE_ACCESS_KEY_ID and STORAGE_SECRET_ACCESS_KEY, and that this "
                           "key may read and write the bucket")
            elif code == "NoSuchBucket":
                message = f"bucket {bucket!r} does not exist at {endpoint} (STORAGE_BUCKET)"
            else:
                message = f"storage failed to {action} in bucket {bucket!r} at {endpoint} ({code})"
        except (NoCredentialsError, PartialCredentialsError):
            message = (f"no storage credentials to {action}: set STORAGE_ACCESS_KEY_ID and "
                       "STORAGE_SECRET_ACCESS_KEY")
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError):
            message = f"cannot reach the storage endpoint {endpoint} to {action} (STORAGE_ENDPOINT_URL)"
        except BotoCoreError as exc:
            message = f"storage failed to {action} in bucket {bucket!r} at {endpoint} ({type(exc).__name__})"
        else:
            return
        raise StorageError(message) from None


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or exc.response.get("ResponseMetadata", {}).get(
        "HTTPStatusCode", "unknown"))


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.storage", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    purge = commands.add_parser("purge", help="delete results and cache entries older than --days (STORAGE_* env)")
    purge.add_argument("--days", type=float, required=True, help="keep objects younger than this many days")
    purge.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    args = parser.parse_args(argv)
    if args.days < 0:
        parser.error("--days must be zero or more")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        store = ResultStore.from_env()
        if store is None:
            print("STORAGE_BUCKET is not set: nothing to purge", file=sys.stderr)
            return 2
        if args.dry_run:
            count = sum(1 for _ in store.expired(args.days))
            print(f"{count} objects older than {args.days:g} days under {store.config.prefix}/ would be deleted")
        else:
            count = store.purge(args.days)
            print(f"deleted {count} objects older than {args.days:g} days under {store.config.prefix}/")
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
