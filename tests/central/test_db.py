"""Migrations, models and the registry seed, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    func,
    inspect,
    select,
)
from sqlalchemy.orm import Session, sessionmaker

from central.config import SETTINGS, CentralConfig, load_config
from central.db import alembic_config, current_revision, migrate, session_factory
from central.errors import ConfigError, SeedError
from central.models import ApiToken, Base, Service, Site, SiteKind, Window
from central.seed import load_seed, read_sites


def test_migrations_match_models(engine: Engine) -> None:
    migrate(engine)  # a second run is a no-op
    assert current_revision(engine) == "0012"
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_api_tokens_made_outside_alembic_are_taken_over(engine: Engine) -> None:
    """Before 0002 the table came from ``create_all`` beside Alembic: its tokens must survive."""
    command.downgrade(alembic_config(engine), "0001")
    assert not inspect(engine).has_table("api_tokens")
    legacy = MetaData()
    table = Table(  # exactly what central.auth.ensure_schema created before revision 0002
        "api_tokens", legacy,
        Column("id", String(8), primary_key=True),
        Column("secret_sha256", String(64), nullable=False),
        Column("name", String(100), nullable=False),
        Column("role", String(16), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("revoked_at", DateTime(timezone=True), nullable=True),
    )  # fmt: skip
    legacy.create_all(engine)
    with engine.begin() as connection:
        connection.execute(table.insert().values(
            id="0123abcd", secret_sha256="0" * 64, name="ops", role="operator",
            created_at=datetime(2026, 11, 1, tzinfo=UTC)))  # fmt: skip
    migrate(engine)
    assert current_revision(engine) == "0012"
    with session_factory(engine)() as session:
        token = session.get_one(ApiToken, "0123abcd")
    assert (token.name, token.role, token.revoked_at) == ("ops", "operator", None)


def test_full_seed(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        counts = load_seed(session)
    with sessions.begin() as session:
        again = load_seed(session)  # idempotent
    assert (again.services, again.windows) == (0, 0)
    with sessions() as session:
        kinds = dict(session.execute(select(Site.kind, func.count()).group_by(Site.kind)).all())
        assert kinds == {SiteKind.CITY_HALL: 1, SiteKind.DISTRICT: 25, SiteKind.VILLAGE: 277}
        assert session.scalar(select(func.count(func.distinct(Site.town)))) == 25
        city = session.get_one(Site, "zs-city")
        assert city.name == "中山市政务服务中心"
        windows = session.scalar(
            select(func.count()).select_from(Window).where(Window.site_id == "zs-city")
        )
        assert windows == 220
        assert counts.sites == 303
        services = session.scalar(select(func.count()).select_from(Service))
        assert services == counts.services


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("zs-x,名,镇,village,1,2", "wrong number of columns"),
        ("zs-x,名,镇,hamlet,1,2,3", "hamlet"),
        ("ZS-X,名,镇,village,1,2,3", "invalid site id"),
        ("zs-x,名,镇,village,north,2,3", "north"),
        ("zs-x,名,镇,village,1,2,0", "windows"),
        ("zs-a,名,镇,village,1,2,3", "duplicate"),
    ],
)
def test_seed_errors_name_the_line(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "sites.csv"
    path.write_text(
        f"# sample\nid,name,town,kind,lat,lon,windows\nzs-a,甲,镇,village,,,1\n{row}\n",
        encoding="utf-8",
    )
    with pytest.raises(SeedError, match=f"sites.csv:4: .*{message}"):
        read_sites(path)


def test_config_sources(tmp_path: Path) -> None:
    path = tmp_path / "central.toml"
    path.write_text(
        '[central]\ndatabase_url = "postgresql+psycopg://c@db/onedoor"\n'
        "mqtt_port = 8883\nmqtt_tls = true\nwebhook_timeout_s = 2\n"
    )
    config = load_config(
        path,
        env={
            "ONEDOOR_CENTRAL_MQTT_PORT": "1884",
            "ONEDOOR_CENTRAL_INFLUX_URL": "http://influx:8086",
        },
    )
    assert config.database_url == "postgresql+psycopg://c@db/onedoor"
    assert (config.mqtt_port, config.mqtt_tls, config.webhook_timeout_s) == (1884, True, 2.0)
    assert config.influx_url == "http://influx:8086"
    assert load_config(env={}) == CentralConfig()
    assert all(s.help for s in SETTINGS)
    assert [s.name for s in SETTINGS] == list(CentralConfig.__dataclass_fields__)


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("mqtt_prot = 1\n", {}, "unknown setting 'mqtt_prot'"),
        ('mqtt_port = "x"\n', {}, "mqtt_port: expected int"),
        ("mqtt_port = 70000\n", {}, "not a TCP port"),
        ("", {"ONEDOOR_CENTRAL_MQTT_PORT": "eighty"}, "MQTT_PORT"),
        ("", {"ONEDOOR_CENTRAL_MQTT_TLS": "maybe"}, "not a boolean"),
        ('influx_url = "influx:8086"\n', {}, "influx_url"),
        ("batch_max_messages = 0\n", {}, "must be positive"),
        ("[central\n", {}, "central.toml"),
    ],
)
def test_config_errors(tmp_path: Path, toml: str, env: dict[str, str], message: str) -> None:
    path = tmp_path / "central.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_config(path, env=env)


def test_every_setting_is_documented() -> None:
    readme = (Path(__file__).parents[2] / "central" / "README.md").read_text("utf-8")
    assert [s.name for s in SETTINGS if f"`{s.name}`" not in readme] == []
