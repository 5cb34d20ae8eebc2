"""The embedded espeak-ng engine: real synthesis, real word timestamps, honest limits.

Word starts come from espeak-ng's ``espeakEVENT_WORD`` events; ends from the
next word start pulled back over silence (``relay.tts.timing``). Texts are
synthesised in sentence-aligned chunks of ``CHUNK_CHARS``, one worker job each,
so a 15,000-character request never monopolises a worker and other requests
interleave. Clones do **not** imitate the speaker: they take the reference's
median pitch (see ``relay.tts.voices``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from relay.tts import jobs, timing
from relay.tts.engine import Piece, RefCallback, Registration, TtsEngine, TtsError, VoiceSpec
from relay.tts.espeak_lib import EspeakError
from relay.tts.pool import WorkerCrashed, WorkerPool
from relay.tts.voices import VoiceParams, clone_params, design_params

CHUNK_CHARS = 1200
DESIGN_SAMPLE_TEXT = ("Hello! This is my voice. I can read stories, answer questions, "
                      "and tell you about the weather. I hope you like how I sound.")


class EspeakEngine(TtsEngine):
    name = "espeak"

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    async def stream(self, voice: VoiceSpec, text: str, *, speed: float, stability: float, with_timings: bool,
                     on_ref: RefCallback) -> AsyncIterator[Piece]:
        params = VoiceParams.from_json(voice.params).for_request(speed, stability).to_json()
        for _off, chunk in timing.split_text(text, CHUNK_CHARS):
            try:
                pcm, rate, words = await self.pool.run(jobs.speak, chunk, params)
            except (EspeakError, WorkerCrashed) as exc:
                raise TtsError(502, "TTS_FAILED", f"espeak-ng synthesis failed: {exc}") from None
            yield Piece(pcm, rate, [timing.WordTiming(*w) for w in words])

    async def register_clone(self, *, name: str, reference_wav: bytes, transcript: str,
                             median_f0_hz: float | None, language: str) -> Registration:
        return Registration(params=clone_params(median_f0_hz, language).to_json())

    async def design(self, *, name: str, prompt: str, language: str) -> Registration:
        params = design_params(prompt, language).to_json()
        try:
            pcm, rate, _ = await self.pool.run(jobs.speak, DESIGN_SAMPLE_TEXT, params)
            wav = await self.pool.run(jobs.encode, pcm, rate, "wav")
        except (EspeakError, WorkerCrashed) as exc:
            raise TtsError(502, "DESIGN_FAILED", f"could not materialise the designed voice: {exc}") from None
        return Registration(params=params, reference_wav=wav)
