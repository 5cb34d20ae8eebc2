"""relay._fast.encode_batch: compiled == pure-Python twin == one OpusEncoder.encode per frame."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay._fast import opusbatch, opusbatch_py
from relay.media.opus import ENCODE_FN, OpusDecoder, OpusEncoder

IMPLS = [opusbatch.encode_batch, opusbatch_py.encode_batch]


def encoders(n: int) -> list[OpusEncoder]:
    return [OpusEncoder(24000, complexity=4) for _ in range(n)]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(-32768, 32767), min_size=480, max_size=480), min_size=1, max_size=4),
       st.integers(1, 3))
def test_compiled_twin_and_per_frame_encodes_agree(frames_samples, rounds):
    frames = [np.array(f, "<i2").tobytes() for f in frames_samples]
    n = len(frames)
    ref, a, b = encoders(n), encoders(n), encoders(n)
    for _ in range(rounds):  # the encoders' state carries over between rounds in all three
        expected = [enc.encode(f) for enc, f in zip(ref, frames, strict=True)]
        got_a = opusbatch.encode_batch(ENCODE_FN, [e.state for e in a], frames, 480)
        got_b = opusbatch_py.encode_batch(ENCODE_FN, [e.state for e in b], frames, 480)
        assert got_a == expected and got_b == expected
    for enc in ref + a + b:
        enc.close()


@pytest.mark.parametrize("encode_batch", IMPLS, ids=["compiled", "python"])
def test_bad_items_get_bad_arg_without_calling_libopus_and_the_rest_encode(encode_batch):
    enc, closed = OpusEncoder(24000), OpusEncoder(24000)
    closed.close()
    tone = (6000 * np.sin(2 * np.pi * 440 * np.arange(480) / 24000)).astype("<i2").tobytes()
    out = encode_batch(ENCODE_FN, [enc.state, closed.state, enc.state, None, enc.state],
                       [tone, tone, tone[:-2], tone, bytearray(tone)], 480)
    assert isinstance(out[0], bytes) and out[1:] == [-1, -1, -1, -1]
    assert len(OpusDecoder(24000).decode(out[0])) == 960
    assert encode_batch(ENCODE_FN, [], [], 480) == []
    with pytest.raises(ValueError):
        encode_batch(ENCODE_FN, [enc.state], [], 480)
    with pytest.raises(ValueError):
        encode_batch(0, [enc.state], [tone], 480)
    with pytest.raises(ValueError):
        encode_batch(ENCODE_FN, [enc.state], [tone], 0)
    enc.close()
