"""Fixtures of the deploy tests: the production profile deployed onto this machine once per
session (see `tests/deploy/fleet.py`), its broker and its central running."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge.simhall import SimulatedDevices
from tests.deploy import fleet
from tests.servers import PostgresCluster


@pytest.fixture(scope="session")
def site_b_devices() -> Iterator[SimulatedDevices]:
    """Site B's printer and window keypads, simulated at the village's shipped settings."""
    with fleet.village_devices() as devices:
        yield devices


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory, postgres_cluster: PostgresCluster,
               site_b_devices: SimulatedDevices) -> fleet.Deployment:
    """site.yml run twice: broker, two central replicas on PostgreSQL, two villages, a hall."""
    database_url = fleet.prepare_database(postgres_cluster)
    return fleet.deploy_production(tmp_path_factory.mktemp("fleet"), database_url,
                                   site_b_devices)


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
