"""Measure what the early first-flight resend (relay.media.handshake.FirstFlight) saves against werift.

werift's DTLS server is not listening yet when relay's first ClientHello arrives, so that flight is
lost on every call; without the resend the handshake waits for OpenSSL's 1 s retransmit.

    PYTHONPATH=$PWD python scripts/dtls_first_flight.py [--calls 8]

Runs the interop suite's werift device (tests/interop/stacks/werift_client.cjs; npm packages as
scripts/test.sh installs them) against an in-process relay on 127.0.0.1, ``--calls`` calls with the
resend and as many without, alternating, and prints the device's time from its start to DTLS
connected (ms), and relay's resend counter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp.test_utils import TestServer  # noqa: E402

from relay.media import handshake, ice  # noqa: E402
from relay.settings import load_settings  # noqa: E402
from relay.web.app import create_app  # noqa: E402
from relay.web.realtime import MEDIA  # noqa: E402
from tests.interop.conftest import NODE_CACHE, STACKS, device_headers, write_packets  # noqa: E402


class TimedFirstFlight(handshake.FirstFlight):
    """relay's own view: its first ClientHello sent -> its DTLS transport connected (ms)."""

    samples: list[tuple[bool, float, int]] = []

    def __init__(self, transport, resend_after_s=handshake.RESEND_AFTER_S) -> None:
        super().__init__(transport, resend_after_s if ENABLED[0] else ())
        self._sent_at = 0.0
        resend = bool(ENABLED[0])

        @transport.on("statechange")
        def on_state() -> None:
            if transport.state == "connected" and self._sent_at:
                self.samples.append((resend, (self._loop.time() - self._sent_at) * 1000, self.resends))

    async def _send(self, data: bytes) -> None:
        if self.flight is None and not self._sent_at:
            self._sent_at = self._loop.time()
        await super()._send(data)


ENABLED = [True]


async def one_call(url: str, tmp: Path, k: int) -> dict:
    out = tmp / f"call{k}"
    proc = await asyncio.create_subprocess_exec(
        "node", str(STACKS / "werift_client.cjs"), url, json.dumps(device_headers()), str(out), str(tmp / "up.opus"),
        env={**os.environ, "NODE_PATH": str(NODE_CACHE / "node_modules")},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await proc.wait()
    return json.loads(out.with_suffix(".json").read_text())


async def main(calls: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="dtls-first-flight-"))
    ice.configure_host_addresses(["127.0.0.1"])
    settings = load_settings(environ={}, data_dir=str(tmp / "data"), demo_mode=True,
                             ice_host_addresses=["127.0.0.1"], log_format="text")
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    write_packets(tmp / "up.opus")
    url = str(server.make_url("/v1/realtime"))
    handshake.FirstFlight = TimedFirstFlight  # peer.py looks the class up on the module at each call
    times: dict[str, list[int]] = {"with resend": [], "without": []}
    try:
        await one_call(url, tmp, -1)  # warm-up (imports, first certificate use)
        for k in range(2 * calls):
            mode = "with resend" if k % 2 == 0 else "without"
            ENABLED[0] = mode == "with resend"
            report = await one_call(url, tmp, k)
            if report.get("dtls") == "connected":
                times[mode].append(int(report["dtls_connected_ms"]))
    finally:
        resends = server.app[MEDIA].metrics.dtls_first_flight_resends
        await server.close()
    for mode, ms in times.items():
        if ms:
            print(f"{mode:12s} n={len(ms)} start->DTLS connected ms: median {statistics.median(ms):.0f} "
                  f"min {min(ms)} max {max(ms)}")
    print(f"relay_dtls_first_flight_resends_total {resends}")
    for resend in (True, False):
        ms = [round(t) for r, t, _ in TimedFirstFlight.samples if r is resend]
        if ms:
            print(f"relay side, first ClientHello -> DTLS connected ({'with resend' if resend else 'without'}): "
                  f"median {statistics.median(ms):.0f} ms, all {sorted(ms)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=8)
    asyncio.run(main(parser.parse_args().calls))
