"""A device on GStreamer's webrtcbin (libnice ICE, its default RSA DTLS certificate), run by Debian's python3.

    /usr/bin/python3 gst_client.py OFFER_URL HEADERS_JSON OUT_PREFIX [SETUP]

SETUP ``active`` rewrites the offer's ``a=setup:actpass`` so that webrtcbin is the DTLS client.

Offers Opus sendrecv + a data channel, POSTs the offer (non-trickle, ICE on 127.0.0.1 only),
sends TONE_S of a 440 Hz tone then silence, records what it decodes, and writes
OUT_PREFIX.json (what happened) and OUT_PREFIX.pcm (48 kHz mono s16le, what it decoded).
"""

import json
import sys
import time
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

T0 = time.monotonic()
TONE_S = 1.0
RECORD_S = 6.0
TIMEOUT_S = 20.0
AMPLITUDE = 0.25

url, headers, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
setup = sys.argv[4] if len(sys.argv) > 4 else "actpass"
Gst.init(None)
report = {"stack": "gstreamer " + Gst.version_string(), "answer_accepted": False, "dtls": None,
          "datachannel_open": False, "tone_s": TONE_S, "amplitude": AMPLITUDE}
pcm = bytearray()
loop = GLib.MainLoop()

pipe = Gst.parse_launch(
    f"audiotestsrc name=src is-live=true wave=silence freq=440 volume={AMPLITUDE} samplesperbuffer=960 "
    "! audio/x-raw,rate=48000,channels=1,format=S16LE ! tee name=t ! queue ! appsink name=sent emit-signals=true sync=false "
    "t. ! queue ! audioconvert ! opusenc frame-size=20 ! rtpopuspay pt=111 "
    "! application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111 "
    "! webrtcbin name=w bundle-policy=max-bundle")
w = pipe.get_by_name("w")
src = pipe.get_by_name("src")
sent_loud = [0]


def on_sent(sink):
    buf = sink.emit("pull-sample").get_buffer()
    ok, info = buf.map(Gst.MapFlags.READ)
    if ok:
        data = info.data
        sent_loud[0] += sum(1 for i in range(0, len(data), 96) if abs(int.from_bytes(data[i:i + 2], "little", signed=True)) > 300)
        buf.unmap(info)
    return Gst.FlowReturn.OK


pipe.get_by_name("sent").connect("new-sample", on_sent)
# keep the agent referenced: PyGObject drops one reference too many when a temporary wrapper dies
agent = w.get_property("ice-agent")
agent.emit("add-local-ip-address", "127.0.0.1")
channel = None


def finish(*_):
    log("finish")
    if "done" in report:
        return False
    report["done"] = True
    report["dtls"] = dtls_state()
    report["sent_s"] = sent_loud[0] * 48 / 48000  # how long the source really played the tone
    with open(out + ".pcm", "wb") as f:
        f.write(bytes(pcm))
    with open(out + ".json", "w") as f:
        json.dump(report, f)
    loop.quit()
    return False


def dtls_state():
    t = w.emit("get-transceiver", 0)
    tr = t.get_property("receiver").get_property("transport") if t is not None else None
    return tr.get_property("state").value_nick if tr is not None else None


def on_sample(sink):
    buf = sink.emit("pull-sample").get_buffer()
    ok, info = buf.map(Gst.MapFlags.READ)
    if ok:
        pcm.extend(info.data)
        buf.unmap(info)
    return Gst.FlowReturn.OK


def on_pad(_, pad):
    if pad.direction != Gst.PadDirection.SRC:
        return
    bin_ = Gst.parse_bin_from_description(
        "rtpopusdepay ! opusdec ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1 "
        "! appsink name=sink emit-signals=true sync=false", True)
    pipe.add(bin_)
    bin_.get_by_name("sink").connect("new-sample", on_sample)
    bin_.sync_state_with_parent()
    pad.link(bin_.get_static_pad("sink"))


def start_tone_timer():
    # the tone starts only now: webrtcbin holds the audio it gets before DTLS is up and sends it in a burst
    src.set_property("wave", "sine")
    GLib.timeout_add(int(TONE_S * 1000), lambda: src.set_property("wave", "silence") or False)
    GLib.timeout_add(int(RECORD_S * 1000), finish)
    GLib.timeout_add(100, echo_done)


def echo_done():
    """End early once the echo came back and 0.6 s of quiet followed it."""
    n = 960 * 2
    frames = [bytes(pcm[i:i + n]) for i in range(0, len(pcm) // n * n, n)]
    loud = [max(abs(int.from_bytes(f[j:j + 2], "little", signed=True)) for j in range(0, n, 64)) > 1000 for f in frames]
    if any(loud) and len(loud) - (len(loud) - 1 - loud[::-1].index(True)) > 30:
        finish()
        return False
    return "done" not in report


def on_open(ch):
    report["datachannel_open"] = True
    ch.emit("send-string", '{"type":"session.update","session":{}}')


def on_state(*_):
    log("connection state", w.get_property("connection-state").value_nick)
    if w.get_property("connection-state") == GstWebRTC.WebRTCPeerConnectionState.CONNECTED and "connected_at" not in report:
        report["connected_at"] = True
        start_tone_timer()


def log(*args):
    print(f"{time.monotonic() - T0:6.2f}", *args, file=sys.stderr, flush=True)


def post_offer():
    log("posting offer")
    sdp = w.get_property("local-description").sdp.as_text().replace("a=setup:actpass", "a=setup:" + setup)
    req = urllib.request.Request(url, data=sdp.encode(), headers={**headers, "Content-Type": "application/sdp"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer = resp.read().decode()
    except Exception as exc:  # noqa: BLE001
        report["error"] = f"POST failed: {exc}"
        finish()
        return
    ok, msg = GstSdp.SDPMessage.new_from_text(answer)
    desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
    promise = Gst.Promise.new()
    w.emit("set-remote-description", desc, promise)
    log("answer received")
    promise.wait()
    log("answer set")
    reply = promise.get_reply()
    report["answer_accepted"] = reply is None or not reply.has_field("error")


def on_gathering(*_):
    if w.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE and "posted" not in report:
        report["posted"] = True
        GLib.idle_add(lambda: post_offer() or False)


def on_offer(promise, _):
    reply = promise.get_reply()
    offer = reply.get_value("offer") if reply is not None and reply.has_field("offer") else None
    if offer is None:
        log("create-offer failed:", reply.to_string() if reply is not None else None)
        return
    w.emit("set-local-description", offer, Gst.Promise.new())


def on_negotiation(_):
    w.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))


w.connect("on-negotiation-needed", on_negotiation)
w.connect("pad-added", on_pad)
w.connect("notify::ice-gathering-state", on_gathering)
w.connect("notify::connection-state", on_state)
pipe.set_state(Gst.State.PLAYING)
channel = w.emit("create-data-channel", "oai-events", None)
channel.connect("on-open", on_open)
GLib.timeout_add(int(TIMEOUT_S * 1000), finish)
loop.run()
pipe.set_state(Gst.State.NULL)
