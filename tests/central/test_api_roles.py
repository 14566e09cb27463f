"""Every route × every role {none, viewer, operator, admin}: the role matrix is enforced.

The expected table below is the specification; a route missing from it fails
the test, so a new route cannot ship without deciding who may call it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute

from central.auth import Role
from firmware_protocols import mqtt_messages as mm
from tests.central.sim import SimSite
from tests.central.test_api_support import RunningApp, running_app
from tests.servers import MosquittoBroker

PUBLIC = "public"
SESSION = "session"  # dashboard pages and live streams: a session cookie, any role
SESSION_ADMIN = "session-admin"  # a page for admins only: a session cookie of an admin

EXPECTED: dict[tuple[str, str], Role | str] = {
    ("GET", "/api/v1/sites"): Role.VIEWER,
    ("GET", "/api/v1/sites/{site_id}"): Role.VIEWER,
    ("PATCH", "/api/v1/sites/{site_id}"): Role.ADMIN,
    ("POST", "/api/v1/sites"): Role.ADMIN,
    ("POST", "/api/v1/sites/{site_id}/retire"): Role.ADMIN,
    ("POST", "/api/v1/sites/{site_id}/restore"): Role.ADMIN,
    ("PUT", "/api/v1/sites/{site_id}/services/{code}"): Role.ADMIN,
    ("DELETE", "/api/v1/sites/{site_id}/services/{code}"): Role.ADMIN,
    ("PUT", "/api/v1/sites/{site_id}/windows/{number}"): Role.ADMIN,
    ("DELETE", "/api/v1/sites/{site_id}/windows/{number}"): Role.ADMIN,
    ("GET", "/api/v1/registry/{part}.csv"): Role.OPERATOR,
    ("POST", "/api/v1/registry/import"): Role.ADMIN,
    ("GET", "/api/v1/audit"): Role.ADMIN,
    ("GET", "/api/v1/audit.csv"): Role.ADMIN,
    ("GET", "/api/v1/sites/{site_id}/telemetry"): Role.VIEWER,
    ("GET", "/api/v1/events"): Role.VIEWER,
    ("GET", "/api/v1/alarms"): Role.VIEWER,
    ("POST", "/api/v1/alarms/{alarm_id}/ack"): Role.OPERATOR,
    ("GET", "/api/v1/statistics"): Role.VIEWER,
    ("GET", "/api/v1/statistics.csv"): Role.VIEWER,
    ("POST", "/api/v1/sites/{site_id}/commands"): Role.OPERATOR,
    ("GET", "/api/v1/sites/{site_id}/commands"): Role.VIEWER,
    ("GET", "/api/v1/commands/{command_id}"): Role.VIEWER,
    ("GET", "/api/v1/sites/{site_id}/devices"): Role.VIEWER,
    ("POST", "/api/v1/sites/{site_id}/takeover"): Role.OPERATOR,
    ("GET", "/api/v1/sites/{site_id}/diagnostics"): Role.OPERATOR,
    ("GET", "/api/v1/diagnostics/{command_id}"): Role.OPERATOR,
    ("GET", "/api/v1/inventory"): Role.OPERATOR,
    ("GET", "/api/v1/tokens"): Role.ADMIN,
    ("POST", "/api/v1/tokens"): Role.ADMIN,
    ("DELETE", "/api/v1/tokens/{token_id}"): Role.ADMIN,
    # releases and rollouts (central/api_releases.py)
    ("GET", "/api/v1/releases"): Role.VIEWER,
    ("POST", "/api/v1/releases"): Role.ADMIN,
    ("GET", "/api/v1/releases/{version}"): Role.VIEWER,
    ("PUT", "/api/v1/sites/{site_id}/release"): Role.ADMIN,
    ("GET", "/api/v1/fleet/versions"): Role.VIEWER,
    ("POST", "/api/v1/rollouts"): Role.ADMIN,
    ("GET", "/api/v1/rollouts"): Role.VIEWER,
    ("GET", "/api/v1/rollouts/{rollout_id}"): Role.VIEWER,
    ("GET", "/api/v1/rollouts/{rollout_id}/plan"): Role.OPERATOR,
    ("GET", "/api/v1/rollouts/{rollout_id}/gate"): Role.OPERATOR,
    ("POST", "/api/v1/rollouts/{rollout_id}/sites/{site_id}"): Role.ADMIN,
    ("POST", "/api/v1/rollouts/{rollout_id}/resume"): Role.ADMIN,
    ("POST", "/api/v1/rollouts/{rollout_id}/cancel"): Role.ADMIN,
    ("GET", "/versions"): SESSION,
    ("GET", "/api/v1/users"): Role.ADMIN,
    ("POST", "/api/v1/users"): Role.ADMIN,
    ("PATCH", "/api/v1/users/{username}"): Role.ADMIN,
    ("POST", "/api/v1/users/{username}/password"): Role.ADMIN,
    ("GET", "/api/v1/me"): Role.VIEWER,
    ("POST", "/api/v1/me/password"): Role.VIEWER,
    ("POST", "/api/v1/bulk-commands"): Role.OPERATOR,
    ("GET", "/api/v1/bulk-commands"): Role.VIEWER,
    ("GET", "/api/v1/bulk-commands/{bulk_id}"): Role.VIEWER,
    ("GET", "/api/v1/ratings"): Role.VIEWER,
    ("GET", "/api/v1/ratings.csv"): Role.VIEWER,
    ("GET", "/api/v1/ratings/ranking"): Role.VIEWER,
    ("POST", "/api/v1/ratings/report"): Role.ADMIN,
    ("POST", "/api/v1/ratings/report/retry"): Role.ADMIN,
    ("GET", "/api/v1/bad-ratings"): Role.VIEWER,
    ("GET", "/api/v1/bad-ratings/{case_id}"): Role.VIEWER,
    ("POST", "/api/v1/bad-ratings/{case_id}/review"): Role.ADMIN,
    ("POST", "/api/v1/bad-ratings/{case_id}/{action}"): Role.OPERATOR,
    ("GET", "/api/v1/sites/{site_id}/staff"): Role.VIEWER,
    ("PUT", "/api/v1/sites/{site_id}/staff"): Role.ADMIN,
    ("GET", "/api/v1/sites/{site_id}/rating-profile"): Role.VIEWER,
    ("PUT", "/api/v1/sites/{site_id}/rating-profile"): Role.ADMIN,
    ("GET", "/metrics"): Role.VIEWER,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/logout"): PUBLIC,
    ("GET", "/"): SESSION,
    ("GET", "/sites/{site_id}"): SESSION,
    ("GET", "/bookings"): SESSION,
    ("GET", "/sites/{site_id}/bookings"): SESSION,
    ("GET", "/alarms"): SESSION,
    ("GET", "/statistics"): SESSION,
    ("GET", "/statistics/definitions"): SESSION,
    ("GET", "/ratings"): SESSION,
    ("GET", "/ratings/cases/{case_id}"): SESSION,
    ("GET", "/ratings/ranking"): SESSION,
    ("GET", "/live/fleet"): SESSION,
    ("GET", "/live/sites/{site_id}"): SESSION,
    ("GET", "/live/alarms"): SESSION,
    ("GET", "/admin/users"): SESSION_ADMIN,
    ("GET", "/admin/audit"): SESSION_ADMIN,
    ("GET", "/account"): SESSION,
    ("GET", "/commands"): SESSION,
    ("GET", "/commands/{bulk_id}"): SESSION,
    ("GET", "/live/commands/{bulk_id}"): SESSION,
    ("POST", "/api/v1/issuing/stops"): Role.OPERATOR,
    ("GET", "/api/v1/issuing/stops"): Role.VIEWER,
    ("POST", "/api/v1/issuing/stops/{stop_id}/lift"): Role.OPERATOR,
    ("GET", "/api/v1/issuing/stops/{stop_id}/sites"): Role.VIEWER,
    ("GET", "/api/v1/calendar"): Role.VIEWER,
    ("PUT", "/api/v1/calendar"): Role.ADMIN,
    ("POST", "/api/v1/bookings"): Role.OPERATOR,
    ("POST", "/api/v1/bookings/{code}/cancel"): Role.OPERATOR,
    ("POST", "/api/v1/bookings/{code}/change"): Role.OPERATOR,
    ("GET", "/api/v1/sites/{site_id}/booking_slots"): Role.VIEWER,
    ("GET", "/api/v1/sites/{site_id}/booking_rules"): Role.VIEWER,
    ("PUT", "/api/v1/sites/{site_id}/booking_rules"): Role.ADMIN,
    ("GET", "/api/v1/bookings/{code}"): Role.VIEWER,
    ("GET", "/api/v1/bookings/stats"): Role.VIEWER,
    ("GET", "/api/v1/sites/{site_id}/bookings"): Role.VIEWER,
    # The citizens' progress pages: public, found by an unguessable token (limits instead).
    ("GET", "/q/{token}"): PUBLIC,
    ("GET", "/q/{token}/state"): PUBLIC,
    ("GET", "/q/{token}/live"): PUBLIC,
}

PARAMS = {
    "site_id": "zs-city",
    "alarm_id": "987654",
    "command_id": str(uuid.UUID(int=1)),
    "token_id": "deadbeef",
    "stop_id": "stop-unknown",
    "code": "nosuch",
    "number": "99",
    "part": "sites",
    "version": "0.0.1",
    "rollout_id": "424242",
    "username": "nosuch",
    "bulk_id": "set by the env fixture",
    "case_id": "1",  # the 差评 case the env fixture makes
    "action": "note",
}
BODIES = {
    ("PATCH", "/api/v1/sites/{site_id}"): {"expected_config_version": "cfg-7"},
    ("POST", "/api/v1/sites/{site_id}/commands"): {
        "name": "screen_notice",
        "args": {"text": "系统维护", "screen": None, "duration_s": 60},
        "ttl_s": 30,
    },
    ("POST", "/api/v1/tokens"): {"role": "viewer", "name": "matrix"},
    ("POST", "/api/v1/sites/{site_id}/takeover"): {"device": "0123456789abcdef"},
    ("POST", "/api/v1/issuing/stops"): {"scope": "site", "target": "zs-city", "reason": "演练"},
    ("PUT", "/api/v1/calendar"): {"holidays": ["2027-01-01"]},
    ("POST", "/api/v1/sites"): {"id": "zs-matrix", "name": "矩阵", "town": "镇", "kind": "village"},
    ("PUT", "/api/v1/sites/{site_id}/services/{code}"): {"name": "x", "prefix": "Q"},
    ("PUT", "/api/v1/sites/{site_id}/windows/{number}"): {"services": ["nosuch"]},
    ("POST", "/api/v1/registry/import"): {"sites": "id,name,town,kind\n"},
    ("PUT", "/api/v1/sites/{site_id}/release"): {"version": "0.0.1"},
    ("POST", "/api/v1/rollouts"): {"release": "0.0.1"},
    ("POST", "/api/v1/rollouts/{rollout_id}/sites/{site_id}"): {"step": "upgrading"},
    ("POST", "/api/v1/rollouts/{rollout_id}/resume"): {},
    ("POST", "/api/v1/users"): {"username": "matrix", "display_name": "矩阵", "role": "viewer",
                                "towns": None, "password": "matrix-password-1"},
    ("PATCH", "/api/v1/users/{username}"): {"role": "viewer"},
    ("POST", "/api/v1/users/{username}/password"): {"password": "another-password-2"},
    ("POST", "/api/v1/me/password"): {"old_password": "x", "new_password": "y"},
    ("POST", "/api/v1/bulk-commands"): {
        "name": "screen_notice",
        "args": {"text": "系统维护", "screen": None, "duration_s": 60},
        "ttl_s": 30,
        "target": {"sites": ["zs-city"]},
    },
    ("POST", "/api/v1/bad-ratings/{case_id}/review"): {"decision": "reject", "note": "x"},
    ("POST", "/api/v1/bad-ratings/{case_id}/{action}"): {"note": "matrix"},
    ("PUT", "/api/v1/sites/{site_id}/staff"): {"staff": [{"id": "zs01", "name": "张丽"}]},
    ("PUT", "/api/v1/sites/{site_id}/rating-profile"): {"region_code": "442000"},
}
ROLES: list[Role | None] = [None, Role.VIEWER, Role.OPERATOR, Role.ADMIN]


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, mqtt_broker: MosquittoBroker
) -> Iterator[RunningApp]:
    with running_app(tmp_path_factory.mktemp("roles"), mqtt_broker) as running:
        sent = running.client.post("/api/v1/bulk-commands", headers=running.headers(Role.ADMIN),
                                   json=BODIES[("POST", "/api/v1/bulk-commands")])
        assert sent.status_code == 202, sent.text
        PARAMS["bulk_id"] = sent.json()["id"]
        bad = mm.RatingGiven(ticket="A001", window=1, staff="zs01", value=1)
        running.feed(SimSite(PARAMS["site_id"]).event(bad))  # 差评 case 1
        yield running


def _walk(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # FastAPI keeps included routers nested
            yield from _walk(route.original_router.routes)


def routes(env: RunningApp) -> set[tuple[str, str]]:
    return {
        (method, route.path) for route in _walk(env.app.routes) for method in route.methods or ()
    }


def test_every_route_is_in_the_table(env: RunningApp) -> None:
    assert routes(env) == set(EXPECTED)


def _url(path: str) -> str:
    return path.format(**PARAMS)


@pytest.mark.parametrize("role", ROLES, ids=lambda r: "none" if r is None else r.value)
def test_bearer_tokens_against_every_api_route(env: RunningApp, role: Role | None) -> None:
    for (method, path), needed in sorted(EXPECTED.items(), key=str):
        if needed in (PUBLIC, SESSION, SESSION_ADMIN):
            continue
        assert isinstance(needed, Role)
        response = env.client.request(
            method, _url(path), headers=env.headers(role), json=BODIES.get((method, path))
        )
        where = f"{method} {path} as {role}"
        if role is None:
            assert response.status_code == 401, where
            assert response.headers["www-authenticate"] == "Bearer", where
        elif not role.allows(needed):
            assert response.status_code == 403, where
        else:
            assert response.status_code not in (401, 403), (where, response.text)
            assert response.status_code < 500, (where, response.text)


def test_public_routes_need_nothing(env: RunningApp) -> None:
    env.client.cookies.clear()
    assert env.client.get("/healthz").json() == {"status": "ok", "database": "up"}
    assert env.client.get("/login").status_code == 200
    docs = env.client.get("/docs")
    assert docs.status_code == 200
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()  # no CDN: the halls' networks are closed
    assert env.client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    assert "/api/v1/sites" in env.client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("role", ROLES, ids=lambda r: "none" if r is None else r.value)
def test_pages_and_streams_need_a_session(env: RunningApp, role: Role | None) -> None:
    env.client.cookies.clear()
    if role is not None:
        env.login(role)
    for (method, path), needed in sorted(EXPECTED.items(), key=str):
        if needed not in (SESSION, SESSION_ADMIN):
            continue
        url = _url(path)
        if path.startswith("/live/"):
            with env.client.stream(method, url) as response:
                if role is None:
                    assert response.status_code == 401, url
                else:
                    assert response.status_code == 200, url
                    assert response.headers["content-type"].startswith("text/event-stream")
                    assert next(response.iter_lines()) == "retry: 2000"
            continue
        response = env.client.request(method, url, follow_redirects=False)
        if role is None:
            assert response.status_code == 303, url
            assert response.headers["location"].startswith("/login?next=")
        elif needed == SESSION_ADMIN and role is not Role.ADMIN:
            assert response.status_code == 403, url
        else:
            assert response.status_code == 200, url
    env.client.cookies.clear()


def test_streams_refuse_bearer_tokens(env: RunningApp) -> None:
    env.client.cookies.clear()
    with env.client.stream("GET", "/live/fleet", headers=env.headers(Role.ADMIN)) as response:
        assert response.status_code == 401
