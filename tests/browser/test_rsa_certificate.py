"""A browser whose DTLS certificate is RSA 4096 (``RTCPeerConnection.generateCertificate``, what a
page with a certificate of its own passes in ``certificates``) calls relay from the console page, on
the worker's one ICE port and on a port per call. Chromium's flight with that certificate (over 2 KB)
spans several datagrams; what is checked is Chromium's side: the certificate it used (from its getStats) and
the assistant's audio it decoded.
"""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from relay.settings import Settings
from relay.web.app import create_app

from .cdp import Browser
from .conftest import start_server
from .test_call import READY, STATE, step_done

pytestmark = pytest.mark.slow

USE_RSA_4096 = """(async () => {
    const cert = await RTCPeerConnection.generateCertificate({
        name: "RSASSA-PKCS1-v1_5", modulusLength: 4096, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256"});
    const Native = window.RTCPeerConnection;
    window.__rsaPeers = [];
    const WithCertificate = function (config) {
        const pc = new Native({...(config || {}), certificates: [cert]});
        window.__rsaPeers.push(pc);
        return pc;
    };
    WithCertificate.prototype = Native.prototype;
    WithCertificate.generateCertificate = Native.generateCertificate;
    window.RTCPeerConnection = WithCertificate;
    return true;
})()"""

LOCAL_CERTIFICATE = """(async () => {
    const stats = await window.__rsaPeers[window.__rsaPeers.length - 1].getStats();
    let local = null, pair = null;
    stats.forEach((s) => { if (s.type === "transport") { local = s.localCertificateId; pair = s.dtlsState; } });
    let der = null;
    stats.forEach((s) => { if (s.id === local) der = s.base64Certificate; });
    return JSON.stringify({dtlsState: pair, der});
})()"""


@pytest.mark.parametrize("ice_mux", [True, False], ids=["mux", "port per call"])
async def test_a_browser_with_an_rsa_4096_certificate_calls_relay(relay_settings: Settings, browser: Browser,
                                                                  ice_mux: bool) -> None:
    settings = dataclasses.replace(relay_settings, ice_mux=ice_mux)
    server = await start_server(create_app(settings), settings)
    try:
        page = browser.page
        await page.navigate(server.url + "/?demo=1")
        await page.wait_for(READY)
        assert await page.evaluate(USE_RSA_4096, timeout_s=60) is True
        assert await page.evaluate("window.__relayConsole.connect()", timeout_s=60) is True, page.console
        assert await page.evaluate("window.__rsaPeers.length") == 1
        await page.wait_for(step_done("ice"), timeout_s=20)
        await page.wait_for(step_done("channel"), timeout_s=20)
        # the browser's own certificate in this call is the RSA 4096 one
        seen = json.loads(await page.evaluate(LOCAL_CERTIFICATE))
        assert seen["dtlsState"] == "connected", seen
        key = x509.load_der_x509_certificate(base64.b64decode(seen["der"])).public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 4096
        # the fake microphone speaks, the local assistant (echo mode) speaks back: energy Chromium decoded
        await page.wait_for(f"{STATE}.micPeak > 0.05", timeout_s=20)
        await page.wait_for(f"{STATE}.remoteEnergyFrames >= 10 && {STATE}.remotePeak > 0.05", timeout_s=45)
    finally:
        await server.runner.cleanup()
