"""Fixtures of the central tests: every database test runs on SQLite AND PostgreSQL."""

from __future__ import annotations

import itertools
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from central.db import make_engine, migrate, session_factory
from central.seed import SERVICES_CSV, load_seed
from firmware_protocols.mqtt_topics import state_topic
from onedoor.broker import Broker
from tests.servers import MosquittoBroker, PostgresCluster

_numbers = itertools.count(1)

SMALL_SITES = """\
# a tiny registry for fast tests
id,name,town,kind,lat,lon,windows
zs-sanxiang,中山市三乡镇行政服务中心,三乡镇,district,22.3560,113.4340,4
zs-sanxiang-01,三乡雍陌村党群服务中心,三乡镇,village,22.3600,113.4400,2
zs-sanxiang-02,三乡平岚社区党群服务中心,三乡镇,village,,,1
"""


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating every time is slow)."""
    path = tmp_path_factory.mktemp("central-template") / "central.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_cluster: PostgresCluster) -> str:
    """A migrated PostgreSQL database that each test clones with CREATE DATABASE ... TEMPLATE."""
    url = postgres_cluster.create_database("central_template")
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    return "central_template"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty central database of its own for this test, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "central.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    template: str = request.getfixturevalue("postgres_template")
    name = f"central_{next(_numbers)}"
    admin = cluster.url("postgres").replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return cluster.url(name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    migrate(engine)  # a no-op on the migrated copy; checks the revision
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def small_registry(sessions: sessionmaker[Session], tmp_path: Path) -> sessionmaker[Session]:
    """The database with three sites of 三乡镇 and their services and windows."""
    sites_csv = tmp_path / "sites.csv"
    sites_csv.write_text(SMALL_SITES, encoding="utf-8")
    with sessions.begin() as session:
        load_seed(session, sites_csv, SERVICES_CSV)
    return sessions


@pytest.fixture
def sites(
    sessions: sessionmaker[Session], tmp_path: Path, mqtt_broker: MosquittoBroker
) -> Iterator[list[str]]:
    """Three sites with ids unique to this test (the broker and its retained states are shared)."""
    yield from three_sites(sessions, tmp_path, mqtt_broker)


def three_sites(sessions: sessionmaker[Session], tmp_path: Path,
                broker: Broker) -> Iterator[list[str]]:
    """The ``sites`` fixture's work, on any broker: registered, then their retained
    states cleared from ``broker`` at the end."""
    tag = uuid.uuid4().hex[:6]
    ids = [f"zs-t{tag}", f"zs-t{tag}-01", f"zs-t{tag}-02"]
    csv = tmp_path / "sites.csv"
    csv.write_text(
        "id,name,town,kind,lat,lon,windows\n"
        f"{ids[0]},测试镇行政服务中心,测试镇,district,,,3\n"
        f"{ids[1]},测试一村党群服务中心,测试镇,village,,,1\n"
        f"{ids[2]},测试二村党群服务中心,测试镇,village,,,1\n",
        encoding="utf-8",
    )
    with sessions.begin() as session:
        load_seed(session, csv, SERVICES_CSV)
    yield ids
    # Remove the retained states (and Wills) this test left on the shared broker.
    cleaner = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"clean-{ids[0]}")
    cleaner.connect(broker.host, broker.port)
    cleaner.loop_start()
    for site_id in ids:
        cleaner.publish(state_topic(site_id), b"", qos=1, retain=True).wait_for_publish(10)
    cleaner.disconnect()
    cleaner.loop_stop()
