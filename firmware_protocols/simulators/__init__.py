"""Simulated devices that speak the real bytes over ptys.

Unlike the codecs in the parent package these do I/O (ptys, threads, clocks):
they stand in for hardware in tests and in ``onedoor demo``. The codecs never
import from here.
"""
