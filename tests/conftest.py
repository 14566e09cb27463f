"""Session-wide real servers: `mqtt_broker`, `postgres_url`, `fresh_postgres_url`; and the
generated voice clips of the simulated halls (`clips_dir`)."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import MosquittoBroker, PostgresCluster, temporary_postgres

_database_names = itertools.count(1)


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated voice clips, made once for the simulated-hall tests (edge, browser)."""
    from edge.devices.voice import make_clips

    directory = tmp_path_factory.mktemp("clips")
    make_clips(directory)
    return directory


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[MosquittoBroker]:
    """A real Mosquitto on a free loopback port. Tests that stop() it must start() it again."""
    with tempfile.TemporaryDirectory(prefix="onedoor-mosquitto-") as workdir:
        broker = MosquittoBroker(Path(workdir))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    with temporary_postgres() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """SQLAlchemy URL of a database shared by the session (`onedoor_test`)."""
    return postgres_cluster.create_database("onedoor_test")


@pytest.fixture
def fresh_postgres_url(postgres_cluster: PostgresCluster) -> str:
    """SQLAlchemy URL of a new, empty database for this test alone."""
    return postgres_cluster.create_database(f"onedoor_t{next(_database_names)}")
