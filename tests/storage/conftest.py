"""A real S3 API on loopback: ``moto_server`` on a free port, shared by the session, stopped at the end."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests

from avatar_driver.process import free_port
from worker.storage import ResultStore, StorageConfig

REGION = "us-east-1"


@dataclass
class MotoServer:
    url: str
    proc: subprocess.Popen
    log_path: Path

    def client(self, service: str = "s3", key_id: str = "test-key-id", secret: str = "test-secret"):
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, aws_access_key_id=key_id,
                            aws_secret_access_key=secret)

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def iam_credentials(self) -> tuple[str, str]:
        """A real IAM user with s3:* (made while moto accepts anything), for use under ``enforce_auth``."""
        iam = self.client("iam")
        name = f"worker-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    @contextmanager
    def enforce_auth(self) -> Iterator[None]:
        """Make moto check signatures and IAM keys (it accepts any credentials by default)."""
        requests.post(f"{self.url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        try:
            yield
        finally:
            requests.post(f"{self.url}/moto-api/reset-auth", data=b"inf", timeout=10).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_moto(workdir: Path, timeout: float = 60.0) -> MotoServer:
    port = free_port()
    log_path = workdir / "moto.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT)
    server = MotoServer(url=f"http://127.0.0.1:{port}", proc=proc, log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            requests.get(f"{server.url}/moto-api/data.json", timeout=2)
            return server
        except requests.ConnectionError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"moto_server did not answer within {timeout} s")


@pytest.fixture(scope="session")
def moto(tmp_path_factory) -> Iterator[MotoServer]:
    server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture
def storage_config(moto) -> StorageConfig:
    """A fresh bucket per test, so tests never see each other's objects."""
    return StorageConfig(bucket=moto.new_bucket(), endpoint_url=moto.url, access_key_id="test-key-id",
                         secret_access_key="test-secret", region=REGION, prefix="avatars", url_ttl=600)


@pytest.fixture
def store(storage_config) -> ResultStore:
    return ResultStore(storage_config)
