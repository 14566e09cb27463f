"""The hall daemon (issue #5): config, event journal, hall state, device drivers, uplink."""
