"""What the deploy/ checks share: paths, the package version, settings names, private address ranges."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from relay.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
KNOWN_ENV = {env for _n, env, _d, _doc, _s in Settings.field_specs()}
SETTING_RE = re.compile(r"\b(RELAY_[A-Z0-9_]+)\b")

# Addresses coturn must never relay to: private, shared (CGNAT), loopback, link-local (cloud metadata).
MUST_DENY = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
             "100.64.0.0/10", "::1/128", "fc00::/7", "fe80::/10"]


def tool(name: str) -> str:
    """The console script of a test-extra package, next to this Python (or on PATH)."""
    here = Path(sys.executable).with_name(name)
    found = str(here) if here.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[test]' (scripts/test.sh does)"
    return found


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]


def denied_ranges(args: list[str]) -> list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]]:
    """coturn's ``denied-peer-ip=<a>[-<b>]`` options as (first, last) address pairs."""
    out = []
    for arg in args:
        m = re.match(r"^(?:--)?denied-peer-ip=(\S+)$", arg.strip())
        if m:
            first, _, last = m.group(1).partition("-")
            out.append((ipaddress.ip_address(first), ipaddress.ip_address(last or first)))
    return out


def uncovered(args: list[str]) -> list[str]:
    """The MUST_DENY networks that no denied-peer-ip range covers entirely."""
    ranges = denied_ranges(args)
    missing = []
    for net in map(ipaddress.ip_network, MUST_DENY):
        lo, hi = net[0], net[-1]
        if not any(type(a) is type(lo) and a <= lo and hi <= b for a, b in ranges):
            missing.append(str(net))
    return missing


def check_startup(settings: Settings) -> None:
    """What ``relay serve`` refuses before anything binds, run on ``settings``: every area's setup
    (``relay.web.app.create_app``; ``relay.web.realtime.setup`` raises ``SettingsError`` for
    ``ice_port_min``/``ice_port_max`` with ``ice_mux`` on; the ports a node's workers need, split among the
    workers: ``relay.node.state.check_node_ports``, as ``relay serve --workers N`` does first)."""
    from relay.node.state import check_node_ports
    from relay.settings import SettingsError, worker_count
    from relay.web.app import create_app

    create_app(settings)
    try:
        check_node_ports(settings.ice_mux, settings.ice_udp_port, settings.ice_port_min, settings.ice_port_max,
                         worker_count(settings.workers, cores=2))
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
