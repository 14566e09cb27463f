"""Every public exception of a package sits under that package's documented tree.

The trees are drawn in ``edge/errors.py``, ``edge/devices/base.py``,
``central/errors.py``, ``fastpath/types.py`` and ``firmware_protocols/errors.py``;
a caller that catches the root catches everything the package raises on purpose.
Private control-flow exceptions (``_Silent``) never leave their module.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from central.errors import CentralError
from edge.devices.base import DeviceError
from edge.errors import EdgeError
from fastpath.types import DispatchError
from firmware_protocols.errors import ProtocolError

ROOTS: dict[str, tuple[type[BaseException], ...]] = {
    # A terminal's refusal is a remote protocol error (edge.devices.terminals.Refused).
    "edge": (EdgeError, DeviceError, ProtocolError),
    "central": (CentralError,),
    "fastpath": (DispatchError,),
    "firmware_protocols": (ProtocolError,),
}


def _exceptions(package_name: str) -> list[type[BaseException]]:
    package = importlib.import_module(package_name)
    found = []
    for module_info in pkgutil.walk_packages(package.__path__, f"{package_name}."):
        if ".migrations" in module_info.name:  # alembic scripts, run by alembic only
            continue
        module = importlib.import_module(module_info.name)
        found += [
            cls for name, cls in vars(module).items()
            if inspect.isclass(cls) and issubclass(cls, BaseException)
            and cls.__module__ == module.__name__ and not name.startswith("_")
        ]
    return found


@pytest.mark.parametrize("package_name", sorted(ROOTS))
def test_public_exceptions_sit_under_the_package_tree(package_name: str) -> None:
    exceptions = _exceptions(package_name)
    assert exceptions  # the walk found the package's own errors
    outside = [f"{cls.__module__}.{cls.__qualname__}" for cls in exceptions
               if not issubclass(cls, ROOTS[package_name])]
    assert not outside
