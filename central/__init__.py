"""The fleet manager: MQTT ingest, registry, telemetry, alarms, API, dashboards."""
