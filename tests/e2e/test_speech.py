"""Real speech (espeak-ng) through the whole stack: what comes back has the same energy envelope."""

from __future__ import annotations

import asyncio

import numpy as np

from relay.client import encode_pcm16_to_opus, read_wav_pcm16
from relay.client.codec import resample_pcm16
from tests.e2e.audio import RATE_HZ, Capture, best_envelope_correlation, envelope


async def test_espeak_speech_echo_keeps_its_envelope(relay, tmp_path):
    wav = tmp_path / "speech.wav"
    proc = await asyncio.create_subprocess_exec(
        "espeak-ng", "-s", "150", "-w", str(wav), "Hello relay, please repeat this sentence.")
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    speech, rate = read_wav_pcm16(wav)
    speech = resample_pcm16(speech, rate, RATE_HZ)
    pad = np.zeros(RATE_HZ // 2, dtype=np.int16)
    signal = np.concatenate([pad, speech, np.zeros(RATE_HZ * 2, dtype=np.int16)])
    capture, events = Capture(), []
    device = relay.device()
    await device.connect(audio_source=encode_pcm16_to_opus(signal, RATE_HZ), on_audio=capture,
                         on_event=events.append)
    async with asyncio.timeout(20):
        while "output_audio_buffer.stopped" not in [e["type"] for e in events]:  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.05)
    await device.hangup()
    assert [e["type"] for e in events].count("response.done") == 1  # one utterance, one reply
    segments = capture.segments(threshold=300, min_gap_ms=400)
    start = segments[0][0]
    end = segments[-1][0] + segments[-1][1]
    echo = capture.samples[int(start * capture.rate_hz):int(end * capture.rate_hz)]
    sent = envelope(speech, RATE_HZ)
    heard = envelope(echo, capture.rate_hz)
    assert abs(len(heard) - len(sent)) <= 0.15 * len(sent)  # same length, within 15 %
    assert best_envelope_correlation(sent, heard) > 0.8  # same syllable rhythm
