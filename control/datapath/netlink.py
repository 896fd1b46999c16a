"""Interface facts from rtnetlink (pyroute2): index, XDP program and mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pyroute2 import IPRoute

from seawall.control.errors import SeawallError

# IFLA_XDP_ATTACHED (include/uapi/linux/if_link.h): pyroute2 decodes the
# enum to ip(8)'s words; older releases leave the number.
_ATTACHED_MODE = {
    1: "native", 2: "generic", 3: "offload", 4: "multi",
    "xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offload", "xdpmulti": "multi",
}


@dataclass(frozen=True)
class XdpState:
    ifname: str
    ifindex: int
    prog_id: Optional[int]  # None: no XDP program
    mode: Optional[str]  # native | generic | offload | multi


def xdp_state(ifname: str) -> XdpState:
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            raise SeawallError(f"no such interface: {ifname}")
        link = ipr.link("get", index=idx[0])[0]
    xdp = link.get_attr("IFLA_XDP")
    attrs = dict(xdp["attrs"]) if xdp else {}
    attached = _ATTACHED_MODE.get(attrs.get("IFLA_XDP_ATTACHED"))
    prog_id = attrs.get("IFLA_XDP_PROG_ID") or None
    if prog_id is None:
        for key in ("IFLA_XDP_DRV_PROG_ID", "IFLA_XDP_SKB_PROG_ID", "IFLA_XDP_HW_PROG_ID"):
            if attrs.get(key):
                prog_id = attrs[key]
                break
    return XdpState(ifname, idx[0], prog_id if attached else None, attached)
