"""``GET /metrics``: Prometheus text exposition format 0.0.4, written by hand (no client).

::

    onedoor_central_sites{state="online"} 271
    onedoor_central_alarms_active{severity="major"} 3
    onedoor_central_http_requests_total{method="GET",route="/api/v1/sites",status="200"} 12
    onedoor_site_info{site="zs-city",name="中山市政务服务中心",town="石岐街道",kind="city_hall"} 1
    onedoor_site_acked_seq{site="zs-city"} 123456789
    onedoor_site_queue_waiting{site="zs-city",service="huji"} 4

Fleet figures come from :meth:`central.queries.ReadModel.fleet_counts`, per-site
ones from :meth:`~central.queries.ReadModel.site_gauges` (each ``onedoor_site_*``
series carries only ``site``: join ``onedoor_site_info`` for names and towns,
e.g. ``sum by (town) (onedoor_site_online * on(site) group_left(town)
onedoor_site_info)``), and the HTTP side from the in-process
:class:`central.context.HttpMetrics`, which the request counter installed here
keeps. Per-site series cost about ten lines per site; a province-size fleet can
turn them off with the ``metrics_per_site`` setting.

Numbers print exactly: integers as integers, floats in their shortest exact form
(``repr``), so a counter past a million or a unix time keeps every digit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse

from central.access import Viewer
from central.context import Central, central_of
from central.queries import ReadModel
from central.service import CentralService
from central.views import SiteGauges

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted by name; any other is counted as ``OTHER`` (callers cannot add series)."""


def format_value(value: float) -> str:
    """A sample value as the exposition format reads it, with every digit kept."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metric_line(name: str, value: float, labels: dict[str, str] | None = None) -> str:
    if labels:
        inner = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
        return f"{name}{{{inner}}} {format_value(value)}"
    return f"{name} {format_value(value)}"


class Exposition:
    """Lines of one exposition: a family header, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> Callable[..., None]:
        """Start family ``name``; returns ``sample(value, **labels)`` for its lines."""
        self.lines.extend((f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"))

        def sample(value: float, **labels: str) -> None:
            self.lines.append(metric_line(name, value, labels or None))

        return sample

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _fleet(out: Exposition, central: Central, read: ReadModel) -> None:
    counts = read.fleet_counts(central.now())
    sites = out.family("onedoor_central_sites", "gauge",
                       "Sites in the registry by connection state.")  # fmt: skip
    sites(counts.sites_online, state="online")
    sites(counts.sites_offline, state="offline")
    alarms = out.family("onedoor_central_alarms_active", "gauge", "Active alarms by severity.")
    for severity, active in counts.alarms_active.items():
        alarms(active, severity=severity)
    rejected = out.family(
        "onedoor_central_ingest_rejected_total", "counter", "Refused MQTT payloads by reason."
    )
    for reason, count in counts.rejects.items():
        rejected(count, reason=reason)
    out.family("onedoor_central_events_stored", "gauge",
               "Highest event row id (events committed).")(counts.events_stored)  # fmt: skip
    out.family("onedoor_central_commands_pending", "gauge",
               "Commands sent, not answered, not expired.")(counts.commands_pending)  # fmt: skip


def _sites(out: Exposition, gauges: SiteGauges) -> None:
    info = out.family("onedoor_site_info", "gauge",
                      "Registry labels of a site (always 1): join on site for name, town, kind.")
    online = out.family("onedoor_site_online", "gauge", "1 while the site's edge is connected.")
    seen = out.family("onedoor_site_last_seen_timestamp_seconds", "gauge",
                      "When the central last heard from the site, unix seconds.")
    outbox = out.family("onedoor_site_outbox_depth", "gauge",
                        "Events the edge holds that the central has not acknowledged.")
    acked = out.family("onedoor_site_acked_seq", "gauge",
                       "Highest seq such that every event up to it is committed.")
    highest = out.family("onedoor_site_max_seq", "gauge", "Highest event seq committed.")
    drift = out.family("onedoor_site_config_drift", "gauge",
                       "1 while the site reports another config version than expected.")
    alarms = out.family("onedoor_site_alarms_active", "gauge", "Active alarms of the site.")
    for site in gauges.sites:
        info(1, site=site.id, name=site.name, town=site.town, kind=site.kind)
    for site in gauges.sites:
        online(site.online, site=site.id)
    for site in gauges.sites:
        if site.last_seen_at is not None:
            seen(site.last_seen_at.timestamp(), site=site.id)
    for site in gauges.sites:
        if site.outbox_depth is not None:
            outbox(site.outbox_depth, site=site.id)
    for site in gauges.sites:
        acked(site.acked_seq, site=site.id)
    for site in gauges.sites:
        highest(site.max_seq, site=site.id)
    for site in gauges.sites:
        drift(site.config_drift, site=site.id)
    for site in gauges.sites:
        alarms(site.alarms_active, site=site.id)
    waiting = out.family("onedoor_site_queue_waiting", "gauge", "People waiting per service.")
    for queue in gauges.queues:
        if queue.waiting is not None:
            waiting(queue.waiting, site=queue.site_id, service=queue.service)
    oldest = out.family("onedoor_site_queue_oldest_wait_seconds", "gauge",
                        "How long the longest-waiting ticket of a service has waited.")
    for queue in gauges.queues:
        if queue.oldest_wait_s is not None:
            oldest(queue.oldest_wait_s, site=queue.site_id, service=queue.service)
    rejected = out.family("onedoor_site_ingest_rejected_total", "counter",
                          "Refused MQTT payloads of a site by reason.")
    for reject in gauges.rejects:
        rejected(reject.count, site=reject.site_id, reason=reject.reason)  # fmt: skip


def _process(out: Exposition, central: Central) -> None:
    requests = out.family("onedoor_central_http_requests_total", "counter",
                          "HTTP requests by route and status.")  # fmt: skip
    for (method, route, status), count in sorted(central.metrics.requests.items()):
        requests(count, method=method, route=route, status=str(status))
    out.family("onedoor_central_sse_clients", "gauge", "Open server-sent-event streams.")(
        central.streams.open
    )
    out.family("onedoor_central_start_time_seconds", "gauge", "Process start, unix seconds.")(
        central.metrics.started
    )
    if central.service is not None:
        _ingest(out, central.service)


def _ingest(out: Exposition, service: CentralService) -> None:
    """This replica's ingest: publishes taken and committed, CPU per stage (capacity)."""
    out.family("onedoor_central_ingest_received_total", "counter",
               "MQTT publishes this replica received.")(service.received)  # fmt: skip
    out.family("onedoor_central_ingest_committed_total", "counter",
               "Received publishes whose batch is done.")(service.committed)  # fmt: skip
    stages = out.family("onedoor_central_ingest_cpu_seconds_total", "counter",
                        "CPU seconds this replica spent per ingest stage.")  # fmt: skip
    cpu = dict(service.processor.stages.cpu_s)
    cpu["mqtt.receive"] = service.mqtt.receive_cpu_s
    for stage, seconds in cpu.items():
        stages(round(seconds, 6), stage=stage)


def render_metrics(central: Central, read: ReadModel | None = None) -> str:
    """The exposition of the fleet, of every site (unless turned off) and of this process;
    ``read``: scoped to a town's account (its sites only), else the whole city."""
    read = read or central.read
    out = Exposition()
    _fleet(out, central, read)
    _process(out, central)
    if central.config.metrics_per_site:
        _sites(out, read.site_gauges())
    return out.text()


router = APIRouter()


@router.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
def metrics(request: Request, principal: Viewer) -> Response:
    central = central_of(request)
    return Response(render_metrics(central, central.read_as(principal)), media_type=CONTENT_TYPE)


def install(app: FastAPI) -> None:
    """Add ``/metrics`` and the request counter to ``app``."""
    app.include_router(router)

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        method = request.method if request.method in HTTP_METHODS else "OTHER"
        central_of(request).metrics.requests[(method, path, response.status_code)] += 1
        return response


__all__ = [
    "CONTENT_TYPE",
    "HTTP_METHODS",
    "format_value",
    "install",
    "metric_line",
    "render_metrics",
    "router",
]
