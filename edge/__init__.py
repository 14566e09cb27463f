"""The hall daemon: config, event journal, hall state, device drivers, uplink (edge/README.md)."""
