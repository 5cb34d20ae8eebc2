"""Microbenchmarks of the TTS hot spots (pytest-benchmark; run with --benchmark-enable to time them).

    pytest -q tests/app_api/test_bench.py --benchmark-enable
"""

from __future__ import annotations

from relay.tts import audio, jobs, timing

TEXT = "The little fox walked down to the river every morning to drink the cold water and to watch the fish. " * 4


def test_bench_espeak_chunk(benchmark) -> None:  # noqa: ANN001
    pcm, rate, words = benchmark(jobs.speak, TEXT, {})
    assert len(words) == len(timing.tokenise(TEXT)) and len(pcm) / 2 / rate > 15


def test_bench_word_timings(benchmark) -> None:  # noqa: ANN001
    from relay.tts.espeak_lib import Espeak

    raw = Espeak.shared().synthesise(TEXT)
    events = [(w.text_position, w.start_sample) for w in raw.words]
    out = benchmark(timing.word_timings, TEXT, events, raw.pcm16, raw.rate_hz)
    assert len(out) == len(timing.tokenise(TEXT))


def test_bench_mp3_encode(benchmark) -> None:  # noqa: ANN001
    pcm, rate, _ = jobs.speak(TEXT, {})
    mp3 = benchmark(audio.encode_mp3, pcm, rate)
    assert audio.decode_file_info(mp3)[0] == "mp3"
