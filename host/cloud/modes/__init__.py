"""The host halves of the link modes, registered under the names of `edge_runtime.modes`."""

from __future__ import annotations

from host.cloud.modes.base import HostMode
from host.cloud.modes.cloud import CloudHost
from host.cloud.modes.hierarchical import HierarchicalHost
from host.cloud.modes.split import SplitHost

HOST_MODES: dict[str, type[HostMode]] = {
    cls.spec.name: cls for cls in (HierarchicalHost, SplitHost, CloudHost)
}


def host_mode(name: str) -> type[HostMode]:
    """The host half of link mode `name`; ValueError names the modes a host serves."""
    try:
        return HOST_MODES[name]
    except KeyError:
        raise ValueError(
            f"--mode {name!r}: the host serves one of {', '.join(HOST_MODES)}"
        ) from None


__all__ = ["HOST_MODES", "HostMode", "host_mode"]
