"""Unit tests of the sans-I/O pieces: timing, voice parameter mapping, pitch, pool admission, storage keys."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.files.base import check_key
from relay.tts import audio, timing
from relay.tts.pool import TtsBusy, WorkerPool
from relay.tts.voices import VoiceParams, clone_params, design_params
from tests.app_api.helpers import tone_pcm


def test_tokenise_strips_punctuation_and_keeps_offsets() -> None:
    text = '"Hello," she said -- (quietly)... 42!'
    toks = timing.tokenise(text)
    assert [t.word for t in toks] == ["Hello", "she", "said", "quietly", "42"]
    for t in toks:
        assert text[t.start:t.end] == t.word


def test_grouped_words_share_the_span_and_multi_event_tokens_merge() -> None:
    rate = 1000
    pcm = (np.ones(3000, dtype="<i2") * 8000).tobytes()  # 3 s of "speech" at 1 kHz
    text = "on the sea 42"
    # events: "on" at 0 (covers "on the"), "sea" at 1000, "42" spoken as two words at 2000 and 2500
    events = [(0, 0), (7, 1000), (11, 2000), (12, 2500)]
    ts = timing.word_timings(text, events, pcm, rate)
    assert [t.word for t in ts] == ["on", "the", "sea", "42"]
    assert ts[0].start_ms == 0 and ts[1].end_ms == 1000 and ts[0].end_ms == ts[1].start_ms
    assert ts[0].end_ms == 1000 * 3 // 7  # "on " vs "the ": 3 of 7 weight units
    assert ts[2].start_ms == 1000 and ts[3].start_ms == 2000 and ts[3].end_ms == 3000


def test_word_ends_are_pulled_back_over_silence() -> None:
    rate = 1000
    x = np.zeros(2000, dtype="<i2")
    x[0:400] = 8000      # word 1 is 400 ms, then a pause
    x[1000:1500] = 8000  # word 2
    ts = timing.word_timings("one two", [(0, 0), (4, 1000)], x.tobytes(), rate)
    assert (ts[0].start_ms, ts[0].end_ms) == (0, 400)
    assert (ts[1].start_ms, ts[1].end_ms) == (1000, 1500)


@given(st.text(alphabet=st.sampled_from("abc .!?\n"), min_size=0, max_size=400), st.integers(5, 80))
def test_split_text_covers_the_text_in_order(text: str, max_chars: int) -> None:
    chunks = timing.split_text(text, max_chars)
    assert all(len(c) <= max_chars for _, c in chunks)
    rebuilt = "".join(c for _, c in chunks)
    assert rebuilt.split() == text.split()
    for off, c in chunks:
        assert text[off: off + len(c)] == c


def test_rescale_maps_span_onto_span() -> None:
    ts = [timing.WordTiming("a", 100, 200), timing.WordTiming("b", 300, 500)]
    out = timing.rescale(ts, (100, 500), (1000, 1800))
    assert [(t.start_ms, t.end_ms) for t in out] == [(1000, 1200), (1400, 1800)]


def test_design_is_deterministic_and_follows_keywords() -> None:
    a = design_params("Warm, calm adult voice suitable for bedtime stories.")
    assert a == design_params("warm, calm adult voice suitable for bedtime stories.")
    assert a.rate_wpm < 165  # calm/bedtime -> slower
    deep_man = design_params("a deep gravelly old man")
    girl = design_params("a bright young girl")
    assert deep_man.variant.startswith("m") and girl.variant.startswith("f")
    assert deep_man.pitch < girl.pitch
    assert design_params("voix calme", "fr").language == "fr"
    assert design_params("anything", "xx-unknown").language == "en"


def test_request_speed_and_stability() -> None:
    p = VoiceParams(rate_wpm=160, pitch_range=50)
    assert p.for_request(2.0, 0.75).rate_wpm == 320
    assert p.for_request(0.1, 0.75).rate_wpm == 80  # clamped
    assert p.for_request(1.0, 0.0).pitch_range > p.for_request(1.0, 1.0).pitch_range


@pytest.mark.parametrize("f0", [100.0, 150.0, 220.0])
def test_median_pitch_of_a_periodic_signal(f0: float) -> None:
    est = audio.median_pitch_hz(tone_pcm(f0, 2.0), 16000)
    assert est is not None and abs(est - f0) / f0 < 0.03


def test_clone_params_follow_pitch() -> None:
    low, high = clone_params(100.0), clone_params(230.0)
    assert low.variant.startswith("m") and high.variant.startswith("f")
    assert clone_params(None) == VoiceParams()
    assert audio.median_pitch_hz(b"\0\0" * 32000, 16000) is None


async def test_pool_admission_is_bounded() -> None:
    pool = WorkerPool(workers=1, queue_limit=1)
    async with pool.admit(), pool.admit():
        assert pool.admitted == 2
        with pytest.raises(TtsBusy):
            async with pool.admit():
                pass
    assert pool.admitted == 0
    pool.close()


@pytest.mark.parametrize("key", ["../x", "a/../b", "/abs", "a//b", "", "a/./b", "x" * 200, "a\\b", "a b"])
def test_bad_storage_keys(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)


def test_mp3_and_wav_encoders_roundtrip() -> None:
    pcm = tone_pcm(200.0, 1.5, 22050)
    fmt, dur = audio.decode_file_info(audio.encode_mp3(pcm, 22050))
    assert fmt == "mp3" and abs(dur - 1.5) < 0.03
    fmt, dur = audio.decode_file_info(audio.encode_wav(pcm, 22050))
    assert fmt == "wav" and abs(dur - 1.5) < 1e-3
    with pytest.raises(audio.AudioDecodeError):
        audio.decode_to_pcm16(b"garbage" * 100, 16000, max_seconds=30)


async def test_pocketsphinx_recognises_espeak_speech() -> None:
    from relay.tts.transcribe import PocketsphinxTranscriber, TranscriptionError
    from tests.app_api.helpers import SPEECH, speech_pcm

    pool = WorkerPool(workers=1, queue_limit=0)
    try:
        pcm, rate = speech_pcm(14.0)
        text = await PocketsphinxTranscriber(pool).transcribe(pcm, rate, "en")
        spoken = set(SPEECH.lower().replace(".", "").split())
        assert len(set(text.lower().split()) & spoken) >= 4, text  # a small old model: some words, not all
        # white noise: nothing recognised -> TRANSCRIPTION_FAILED upstream
        noise = np.random.default_rng(1).normal(0, 3000, 16000 * 3).astype("<i2").tobytes()
        with pytest.raises(TranscriptionError):
            await PocketsphinxTranscriber(pool).transcribe(noise, 16000, "en")
    finally:
        pool.close()


async def test_retention_of_files_and_analytics(db, tmp_path) -> None:  # noqa: ANN001
    import os
    import time

    from relay.files import LocalStorage, UrlSigner
    from relay.store import app_requests

    storage = LocalStorage(tmp_path / "files", UrlSigner(b"k" * 32))
    await storage.put("tts/d/old.mp3", b"old")
    await storage.put("tts/d/new.mp3", b"new")
    await storage.put("voices/v/reference.wav", b"ref")
    past = time.time() - 7200
    os.utime(tmp_path / "files/tts/d/old.mp3", (past, past))
    assert await storage.cleanup("tts", 3600) == 1
    assert await storage.get("tts/d/old.mp3") is None and await storage.get("tts/d/new.mp3") is not None
    assert await storage.get("voices/v/reference.wav") is not None  # only the prefix is swept
    await app_requests.record(db, workspace_id="default", client_id="c", app_source="a", endpoint="tts", status=200)
    assert await app_requests.delete_older_than(db, time.time() - 60) == 0
    assert await app_requests.delete_older_than(db, time.time() + 1) == 1
