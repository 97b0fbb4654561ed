"""Fixtures shared across test modules: the dev tarball, a workspace, staged data, a real
S3-compatible server on 127.0.0.1 (moto's standalone server)."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sconeflow.config import Settings, load_settings
from sconeflow.store import LocalStore, open_store

# A shell that starts pytest in the background (`cmd &`) leaves SIGINT ignored, and an
# ignored signal stays ignored in every child: the tests that press Ctrl-C on a real
# `sconeflow` process would wait for ever. With a handler here, children start with the
# default instead, as they do under a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
DEV_TARBALL = REPO.parent / "shared" / "data" / "cifar-100-python.tar.gz"


@pytest.fixture(scope="session")
def dev_tarball() -> Path:
    if not DEV_TARBALL.exists():
        pytest.skip(f"dev tarball not found at {DEV_TARBALL}")
    return DEV_TARBALL


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A fresh embedded workspace under tmp_path, independent of the caller's environment."""
    return load_settings(env={}, home=tmp_path / "home")


@pytest.fixture(scope="session")
def staged_home(tmp_path_factory: pytest.TempPathFactory, dev_tarball: Path) -> Settings:
    """A workspace with the dev tarball staged once per session (read-only for tests)."""
    from sconeflow.staging import stage_cifar

    home = tmp_path_factory.mktemp("staged") / "home"
    s = load_settings(env={}, home=home)
    stage_cifar(open_store(s), s.bucket, dev_tarball)
    return s


@pytest.fixture
def local_store(settings: Settings) -> LocalStore:
    store = open_store(settings)
    assert isinstance(store, LocalStore)
    return store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 API over HTTP on 127.0.0.1 (moto's standalone server); yields its URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for an s3:// store against the local server (fake credentials)."""
    env = {
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    # boto3 reads credentials from the process environment itself.
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


# Training settings for tests: a real job on the dev data, cut to seconds.
FAST_HP = {"epochs": "1", "ensemble_size": "1", "retrain_full": "false"}


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory, dev_tarball: Path) -> Settings:
    """A workspace with the dev data staged and one fast training job completed."""
    from sconeflow.staging import stage_cifar
    from sconeflow.training.job import run_training_job

    home = tmp_path_factory.mktemp("trained") / "home"
    s = load_settings(env={}, home=home)
    store = open_store(s)
    stage_cifar(store, s.bucket, dev_tarball)
    run_training_job(s, store, FAST_HP, job_name="test-job", log=lambda line: None)
    return s
