"""``GET /metrics``: Prometheus text exposition format 0.0.4, written by hand (no client).

::

    onedoor_central_sites{state="online"} 271
    onedoor_central_alarms_active{severity="major"} 3
    onedoor_central_http_requests_total{method="GET",route="/api/v1/sites",status="200"} 12

The figures come from the read model (:meth:`central.queries.ReadModel.fleet_counts`)
and from the in-process :class:`central.context.HttpMetrics`, which the request
counter installed here keeps.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse

from central.access import Viewer
from central.context import Central, central_of

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _metric_line(name: str, value: float, labels: dict[str, str] | None = None) -> str:
    if labels:
        inner = ",".join(
            f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'.replace(
                "\n", "\\n"
            )
            for k, v in labels.items()
        )
        return f"{name}{{{inner}}} {value:g}"
    return f"{name} {value:g}"


def render_metrics(central: Central) -> str:
    """The exposition of the fleet and of this process's HTTP side."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.extend((f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"))

    counts = central.read.fleet_counts(central.now())
    family("onedoor_central_sites", "gauge", "Sites in the registry by connection state.")
    lines.append(_metric_line("onedoor_central_sites", counts.sites_online, {"state": "online"}))
    lines.append(_metric_line("onedoor_central_sites", counts.sites_offline, {"state": "offline"}))
    family("onedoor_central_alarms_active", "gauge", "Active alarms by severity.")
    for severity, active in counts.alarms_active.items():
        lines.append(_metric_line("onedoor_central_alarms_active", active, {"severity": severity}))
    family("onedoor_central_ingest_rejected_total", "counter", "Refused MQTT payloads by reason.")
    for reason, count in counts.rejects.items():
        lines.append(
            _metric_line("onedoor_central_ingest_rejected_total", count, {"reason": reason})
        )
    family("onedoor_central_events_stored", "gauge", "Highest event row id (events committed).")
    lines.append(_metric_line("onedoor_central_events_stored", counts.events_stored))
    family("onedoor_central_commands_pending", "gauge", "Commands sent, not answered, not expired.")
    lines.append(_metric_line("onedoor_central_commands_pending", counts.commands_pending))
    family("onedoor_central_http_requests_total", "counter", "HTTP requests by route and status.")
    for (method, route, status), count in sorted(central.metrics.requests.items()):
        lines.append(
            _metric_line(
                "onedoor_central_http_requests_total",
                count,
                {"method": method, "route": route, "status": str(status)},
            )
        )
    family("onedoor_central_sse_clients", "gauge", "Open server-sent-event streams.")
    lines.append(_metric_line("onedoor_central_sse_clients", central.metrics.sse_clients))
    family("onedoor_central_start_time_seconds", "gauge", "Process start, unix seconds.")
    lines.append(_metric_line("onedoor_central_start_time_seconds", central.metrics.started))
    return "\n".join(lines) + "\n"


router = APIRouter()


@router.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
def metrics(request: Request, _: Viewer) -> Response:
    return Response(render_metrics(central_of(request)), media_type=CONTENT_TYPE)


def install(app: FastAPI) -> None:
    """Add ``/metrics`` and the request counter to ``app``."""
    app.include_router(router)

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        central_of(request).metrics.requests[(request.method, path, response.status_code)] += 1
        return response


__all__ = ["CONTENT_TYPE", "install", "render_metrics", "router"]
