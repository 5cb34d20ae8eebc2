"""relay.media.compat: one table of every private aiortc/aioice name relay touches, checked at start-up;
the only package touching them besides the hot-path modules; its hooks installed once and per instance.

The scan reads relay/ as source (AST) and the installed aiortc/aioice as source too: a name counts as
aiortc's/aioice's when their code defines or assigns it. What relay touches:
- ``x._name`` (x not ``self``/``cls``) and ``getattr/hasattr/setattr(x, "_name")`` with such a name,
- a mangled name spelled in a string (``"_RTCPeerConnection__certificates"``),
- a module-level replacement (``aioice.ice.get_host_addresses = ...``),
- a per-instance replacement of an aiortc/aioice method (``receiver.receive = ...``) in a module
  under relay/media/ or relay/client/, or one that imports aiortc or aioice.
Such a touch is allowed in ``relay/media/compat/`` and in the per-packet hot-path modules only.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import aioice
import aiortc
import pytest
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from relay.media import compat

ROOT = Path(__file__).resolve().parents[2]
COMPAT = ROOT / "relay" / "media" / "compat"
#: the per-packet paths, which reach aiortc's state inline (their rows stay in the table)
HOT_PATH = {ROOT / "relay" / "media" / name for name in ("rtp_in.py", "rtp_out.py", "uplink.py", "mux.py")}
MANGLED = re.compile(r"^_[A-Z][A-Za-z0-9]*__[a-z][A-Za-z0-9_]*$")


def _mangle(name: str, cls: str | None) -> str:
    if cls and name.startswith("__") and not name.endswith("__"):
        return f"_{cls.lstrip('_')}{name}"
    return name


def _library_vocabulary() -> tuple[set[str], set[str]]:
    """(private names aiortc/aioice define or assign, method names of their classes)."""
    private: set[str] = set()
    methods: set[str] = set()

    def visit(node: ast.AST, cls: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = cls
            if isinstance(child, ast.ClassDef):
                inner = child.name
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = _mangle(child.name, cls)
                if cls:
                    methods.add(name)
                if name.startswith("_"):
                    private.add(name)
            elif isinstance(child, ast.Attribute) and isinstance(child.ctx, ast.Store):
                name = _mangle(child.attr, cls)
                if name.startswith("_"):
                    private.add(name)
            visit(child, inner)

    for pkg in (aiortc, aioice):
        for path in Path(pkg.__file__).parent.rglob("*.py"):
            visit(ast.parse(path.read_text(encoding="utf-8")), None)
    return private, methods


def _touched_names() -> dict[str, list[str]]:
    """name -> where (file:line) for every aiortc/aioice internal relay's code touches."""
    private, methods = _library_vocabulary()
    found: dict[str, list[str]] = {}

    def hit(name: str, path: Path, node: ast.AST) -> None:
        found.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")  # type: ignore[attr-defined]

    for path in sorted((ROOT / "relay").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lib_modules: set[str] = set()  # names bound to aiortc/aioice modules in this file
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in ("aiortc", "aioice"):
                        lib_modules.add(alias.asname or alias.name)
        webrtc_side = bool({"media", "client"} & set(path.relative_to(ROOT).parts[1:-1])) or bool(lib_modules) or any(
            isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in ("aiortc", "aioice")
            for n in ast.walk(tree))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                base = ast.unparse(node.value)
                if isinstance(node.ctx, ast.Store) and base in lib_modules:
                    hit(node.attr, path, node)  # a module-level replacement
                    continue
                if base in ("self", "cls"):
                    continue
                if node.attr.startswith("_") and not node.attr.startswith("__") and node.attr in private:
                    hit(node.attr, path, node)
                elif webrtc_side and isinstance(node.ctx, ast.Store) and node.attr in methods:
                    hit(node.attr, path, node)  # a per-instance replacement of a library method
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) > 1
                  and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
                name = node.args[1].value
                if name.startswith("_") and name in private:
                    hit(name, path, node)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MANGLED.match(node.value):
                if node.value in private:
                    hit(node.value, path, node)
    return found


def test_every_private_aiortc_aioice_name_relay_touches_is_in_the_table() -> None:
    touched = _touched_names()
    # the scan sees the known uses (it is not vacuous)
    for name in ("_RTCRtpReceiver__jitter_buffer", "_run_rtp", "_nominated", "get_host_addresses", "_data",
                 "_RTCPeerConnection__certificates", "datagram_received", "receive"):
        assert name in touched, name
    untabled = {name: where for name, where in touched.items() if name not in compat.NAMES}
    assert not untabled, f"add these to relay.media.compat.TABLE: {untabled}"


def test_private_names_are_touched_in_the_compat_package_and_the_hot_path_only() -> None:
    allowed = {str(p.relative_to(ROOT)) for p in HOT_PATH} | {
        str(p.relative_to(ROOT)) for p in COMPAT.glob("*.py")}
    touched = _touched_names()
    outside = {name: [w for w in where if w.rsplit(":", 1)[0] not in allowed] for name, where in touched.items()}
    outside = {name: where for name, where in outside.items() if where}
    assert not outside, f"move these into relay/media/compat/ (a module per patch family): {outside}"
    # the rule has teeth: the hot path and the compat modules do touch private names
    places = {w.rsplit(":", 1)[0] for where in touched.values() for w in where}
    for module in ("relay/media/rtp_in.py", "relay/media/compat/ice.py", "relay/media/compat/dtls.py",
                   "relay/media/compat/handshake.py", "relay/media/compat/sctp_limit.py", "relay/media/compat/sdk.py"):
        assert module in places, module


def test_table_rows_are_unique_and_name_relay_modules() -> None:
    keys = [(p.name, p.owner) for p in compat.TABLE]
    assert len(keys) == len(set(keys))
    for p in compat.TABLE:
        assert p.kind in (compat.ATTR, compat.MEMBER, compat.MODULE)
        assert p.library in compat.SUPPORTED
        for used in p.used_in.split(", "):
            assert (ROOT / "relay" / (used.replace(".", "/") + ".py")).exists(), p


def test_pyproject_pins_the_supported_minor_versions() -> None:
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for lib, minor in compat.SUPPORTED.items():
        major, low = minor.split(".")
        assert f"{lib}>={minor},<{major}.{int(low) + 1}" in deps, (lib, deps)


def test_check_passes_on_the_installed_versions() -> None:
    assert compat.missing() == []
    compat.check()
    installed = compat.installed()
    assert installed["aiortc"].startswith(compat.SUPPORTED["aiortc"] + ".")
    assert installed["aioice"].startswith(compat.SUPPORTED["aioice"] + ".")


def test_check_names_a_missing_method_and_the_supported_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpReceiver, "_run_rtcp")  # an aiortc that renamed it
    with pytest.raises(compat.CompatError) as info:
        compat.check()
    message = str(info.value)
    assert "\n" not in message
    assert "RTCRtpReceiver._run_rtcp" in message and "media.uplink" in message
    assert "aiortc 1.16.x with aioice 0.13.x" in message and "installed: aiortc 1.16" in message


def test_check_names_a_missing_instance_attribute() -> None:
    gone = compat.Private("_RTCRtpSender__no_such_counter", "aiortc.rtcrtpsender.RTCRtpSender", compat.ATTR,
                          "media.rtp_out", "a counter")
    with pytest.raises(compat.CompatError, match=r"aiortc has no RTCRtpSender\._RTCRtpSender__no_such_counter"):
        compat.check(compat.TABLE + (gone,))
    # the instance attributes of the table are found in the classes' code (not vouched for by name alone)
    real = next(p for p in compat.TABLE if p.name == "_RTCRtpSender__rtp_history")
    assert compat.missing((real,)) == []


def test_check_names_a_missing_module_level_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    monkeypatch.delattr(aioice.ice, "get_host_addresses")
    with pytest.raises(compat.CompatError, match=r"aioice has no ice\.get_host_addresses"):
        compat.check()


def test_relay_serve_refuses_to_start_on_a_missing_name(tmp_path: Path) -> None:
    """One line on stderr and a non-zero exit before anything listens (not a 500 per call)."""
    code = (
        "import sys; from aiortc.rtcrtpsender import RTCRtpSender; del RTCRtpSender._run_rtp; "
        "from relay.cli import main; sys.exit(main(['serve']))"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "RELAY_DATA_DIR": str(tmp_path / "data"),
           "RELAY_PORT": "0", "RELAY_HOST": "127.0.0.1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("relay: aiortc has no RTCRtpSender._run_rtp") and "aiortc 1.16.x" in lines[0]
    assert "Traceback" not in out.stderr and out.stdout == ""


_ONE_PROCESS = textwrap.dedent('''
    import asyncio, json
    import aioice.ice
    import aiortc.rtcpeerconnection as rpc
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.rtcdtlstransport import RTCCertificate

    def theirs(use_ipv4, use_ipv6):  # what the process gathers on without relay (aioice's, or another's)
        return ["127.0.0.4"]

    aioice.ice.get_host_addresses = theirs
    init = RTCPeerConnection.__init__

    async def gathered(pc):
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        lines = [l for l in pc.localDescription.sdp.splitlines() if l.startswith("a=candidate")]
        await pc.close()
        return sorted({l.split()[4] for l in lines})

    def plain():
        return RTCPeerConnection(RTCConfiguration(iceServers=[]))

    async def main():
        out = {}
        before = plain()  # a plain aiortc peer made before relay's install
        from relay.client.ice import host_addresses
        with host_addresses(["127.0.0.2"]):  # the device SDK sets up first
            out["sdk_first"] = await gathered(plain())
        from relay.media import compat, dtls, ice
        compat.install()
        hook = aioice.ice.get_host_addresses
        compat.install()
        out["idempotent"] = aioice.ice.get_host_addresses is hook and compat.ice._replaced is theirs
        ice.configure_host_addresses(["127.0.0.1"])  # the media plane's allowlist
        cert = dtls.current()
        relay_pc = dtls.peer_connection(ice.rtc_configuration(), cert)
        out["relay_cert"] = relay_pc._RTCPeerConnection__certificates[0] is cert
        with ice.gathering():
            out["relay"] = await gathered(relay_pc)
        with host_addresses(["127.0.0.2"]):
            out["sdk_after"] = await gathered(plain())
        after = plain()
        out["own_certs"] = [type(pc._RTCPeerConnection__certificates[0]) is RTCCertificate
                            and pc._RTCPeerConnection__certificates[0] is not cert for pc in (before, after)]
        out["before"] = await gathered(before)
        out["after"] = await gathered(after)
        out["aiortc_untouched"] = rpc.RTCCertificate is RTCCertificate and RTCPeerConnection.__init__ is init
        print(json.dumps(out))

    asyncio.run(main())
''')


def test_install_is_idempotent_and_per_instance_in_one_process() -> None:
    """A fresh process: a plain aiortc peer made before relay's install, the device SDK setting up before
    relay, relay's install twice, relay's own peer, the SDK again and a plain peer after. Each gathers on
    what it asked for (plain peers: what the process had before relay), whatever the order; the
    certificate hook reaches relay's connection only."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _ONE_PROCESS], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["idempotent"] is True
    assert got["sdk_first"] == got["sdk_after"] == ["127.0.0.2"]
    assert got["relay"] == ["127.0.0.1"]
    assert got["before"] == got["after"] == ["127.0.0.4"]
    assert got["relay_cert"] is True and got["own_certs"] == [True, True]
    assert got["aiortc_untouched"] is True


def test_install_refuses_an_aiortc_whose_constructor_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiortc import RTCPeerConnection

    from relay.media.compat import dtls as compat_dtls

    original = RTCPeerConnection.__init__

    def init(self, configuration=None) -> None:  # an aiortc building its certificate another way
        original(self, configuration)

    monkeypatch.setattr(RTCPeerConnection, "__init__", init)
    monkeypatch.setattr(compat, "_installed", False)
    compat_dtls._relay_init.cache_clear()
    try:
        with pytest.raises(compat.CompatError, match="no longer looks up RTCCertificate") as info:
            compat.install()
        assert "\n" not in str(info.value) and "aiortc 1.16.x" in str(info.value)
    finally:
        compat_dtls._relay_init.cache_clear()
