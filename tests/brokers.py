"""The brokers the edge-central MQTT contract tests run on: Mosquitto and amqtt.

Mosquitto is the broker onedoor deploys. amqtt (PyPI, MQTT 3.1.1 only, run
in-process as the demo does when Mosquitto is absent) is the second broker
implementation installable here; onedoor talks to it with MQTT 3.1.1 and plain
subscriptions. A test opts in with :func:`on_both_brokers` and takes the
``contract_broker`` fixture (tests/conftest.py) instead of ``mqtt_broker``.

Where amqtt does not do what the contract relies on, its parametrisation is a
strict xfail with the reason below, measured against amqtt 0.12.1; the findings
are in docs/CAPACITY.md ("A second broker implementation here").
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from onedoor.broker import Broker

# amqtt's AnonymousAuthPlugin marks every login anonymous while anonymous logins are
# allowed (the demo's setting), and its session monitor deletes an anonymous session
# at disconnect: nothing is queued for an offline client, its CONNACK says no session.
AMQTT_KEEPS_NO_ANONYMOUS_SESSION = (
    "amqtt 0.12.1 keeps no session for an anonymous login (its session monitor deletes "
    "anonymous sessions at disconnect), so a command published while the site is offline "
    "is dropped; see docs/CAPACITY.md"
)

# Broker._handle_client_session walks every subscription in the broker, not the
# client's own, and publishes what is retained under it without the topic-ACL check.
AMQTT_SENDS_EVERY_RETAINED_MESSAGE = (
    "amqtt 0.12.1 sends each client at its connect, at QoS 0, every retained message that "
    "matches any client's subscription, bypassing its topic ACL: a site would read every "
    "other site's retained state; see docs/CAPACITY.md"
)
AMQTT_DROPS_UNACKED_QOS1 = (
    "amqtt 0.12.1 resumes the session but does not send again a QoS 1 publish the client "
    "had not acknowledged when its connection dropped: that publish is lost; see "
    "docs/CAPACITY.md"
)


def mqtt_protocol(broker: Broker) -> str:
    """The MQTT version onedoor speaks to ``broker``: 5, or 3.1.1 (plain subscriptions,
    one central replica) for a broker without shared subscriptions."""
    return "5" if broker.shared_subscriptions else "3.1.1"


def _amqtt(kind: str, fails: str | None, raises: type[Exception]) -> object:
    if fails is None:
        return kind
    return pytest.param(kind, marks=pytest.mark.xfail(strict=True, reason=fails, raises=raises))


def on_both_brokers(*, amqtt_fails: str | None = None, raises: type[Exception] = TimeoutError,
                    logins: bool = False) -> pytest.MarkDecorator:
    """Run the test on Mosquitto and on amqtt: there strictly expected to fail, by raising
    ``raises`` (any other error fails the test), when ``amqtt_fails`` gives the reason.
    With ``logins``, on an amqtt that requires a user name (the only way it keeps
    sessions): the test's clients must give one."""
    amqtt = _amqtt("amqtt-logins" if logins else "amqtt", amqtt_fails, raises)
    return pytest.mark.parametrize("contract_broker", ["mosquitto", amqtt], indirect=True)


def on_both_brokers_and_databases(databases: Sequence[str] = ("sqlite", "postgresql"),
                                  ) -> pytest.MarkDecorator:
    """Mosquitto on each central database, amqtt on SQLite only (the broker, not the
    database, is what the amqtt run checks)."""
    cases = [pytest.param("mosquitto", db, id=f"mosquitto-{db}") for db in databases]
    cases.append(pytest.param("amqtt", "sqlite", id="amqtt-sqlite"))
    return pytest.mark.parametrize(("contract_broker", "db_url"), cases, indirect=True)
