"""Fixtures of the deploy tests: the production profile deployed onto this machine once per
session (see `tests/deploy/fleet.py`), its broker and its central running."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.deploy import fleet
from tests.servers import PostgresCluster


@pytest.fixture(scope="session")
def terminal_bus() -> Iterator[str]:
    """A pty standing in for site B's RS485 adapter: its windows have keypads on the bus."""
    controller, device = os.openpty()
    try:
        yield os.ttyname(device)
    finally:
        os.close(controller)
        os.close(device)


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory, postgres_cluster: PostgresCluster,
               terminal_bus: str) -> fleet.Deployment:
    """site.yml run twice: broker, two central replicas on PostgreSQL, two villages, a hall."""
    database_url = fleet.prepare_database(postgres_cluster)
    return fleet.deploy_production(tmp_path_factory.mktemp("fleet"), database_url, terminal_bus)


@pytest.fixture(scope="session")
def fleet_broker(deployment: fleet.Deployment) -> Iterator[fleet.FleetBroker]:
    with fleet.fleet_broker(deployment) as broker:
        yield broker


@pytest.fixture(scope="session")
def central_server(deployment: fleet.Deployment,
                   fleet_broker: fleet.FleetBroker) -> Iterator[fleet.CentralServer]:
    with fleet.central_server(deployment) as server:
        yield server


@pytest.fixture
def central_client(deployment: fleet.Deployment,
                   fleet_broker: fleet.FleetBroker) -> Iterator[fleet.MqttClient]:
    """Logged in as central replica 2 (replica 1 is the running central, if any)."""
    with fleet.mqtt_client(deployment, fleet.CENTRAL_2) as client:
        yield client


@pytest.fixture
def site_a_client(deployment: fleet.Deployment,
                  fleet_broker: fleet.FleetBroker) -> Iterator[fleet.MqttClient]:
    with fleet.mqtt_client(deployment, fleet.SITE_A) as client:
        yield client
