"""The one audio-seconds counter both edges use (relay.call.usage.AudioMeter)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.call.usage import AudioMeter, CallUsage, base64_size


@given(st.binary(max_size=4096))
def test_base64_size_is_the_decoded_length(raw: bytes) -> None:
    text = base64.b64encode(raw).decode()
    assert base64_size(text) == len(base64.b64decode(text)) == len(raw)


@pytest.mark.parametrize(("audio_format", "bytes_per_s"), [("pcm16", 48000), ("g711_ulaw", 8000), ("g711_alaw", 8000)])
def test_meter_counts_seconds_of_the_call_audio_format(audio_format: str, bytes_per_s: int) -> None:
    usage = CallUsage(started_at=0.0)
    meter = AudioMeter(usage, audio_format)
    for _ in range(25):  # 25 uplink chunks of 40 ms (the WebRTC edge): one second
        meter.input(bytes_per_s * 40 // 1000)
    meter.input_base64(base64.b64encode(bytes(bytes_per_s // 2)).decode())  # an append event of 0.5 s
    meter.output_base64(base64.b64encode(bytes(bytes_per_s // 4)).decode())  # a delta of 0.25 s
    assert usage.input_audio_s == pytest.approx(1.5)
    assert usage.output_audio_s == pytest.approx(0.25)


def test_unknown_audio_format_is_refused() -> None:
    with pytest.raises(KeyError):
        AudioMeter(CallUsage(started_at=0.0), "opus")
