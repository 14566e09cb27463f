"""The fleet manager (issue #6): MQTT ingest, registry, telemetry, alarms, API, dashboards."""
