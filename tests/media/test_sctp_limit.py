"""The SCTP reassembly limit on aiortc's own receive code: DATA chunks are fed to a real
``RTCSctpTransport``'s ``_receive_data_chunk`` (aiortc's reassembly, SACK bookkeeping and
receive window), only the association around it is left out."""

from __future__ import annotations

from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_LAST_FRAG,
    SCTP_DATA_UNORDERED,
    WEBRTC_BINARY,
    DataChunk,
    RTCSctpTransport,
)

from relay.media.compat.sctp_limit import MessageSizeLimit

LIMIT = 10_000
FRAG = 1000
RWND = 1 << 20


class Assoc:
    """A real RTCSctpTransport's receive state, its deliveries collected."""

    def __init__(self) -> None:
        t = RTCSctpTransport.__new__(RTCSctpTransport)
        t._inbound_streams = {}
        t._last_received_tsn = 99
        t._sack_misordered = set()
        t._sack_duplicates = []
        t._sack_needed = False
        t._advertised_rwnd = RWND
        t._reconfig_response_seq = 0
        self.delivered: list[tuple[int, bytes]] = []
        self.refused: list[int] = []

        async def receive(stream_id: int, pp_id: int, data: bytes) -> None:
            self.delivered.append((stream_id, data))

        async def no_deferred_resets() -> None:
            return None

        t._receive = receive
        t._reset_deferred_streams = no_deferred_resets
        self.t = t
        self.limit = MessageSizeLimit.install(t, LIMIT, self.refused.append)
        self.tsn = 100

    def message(self, size: int, *, stream: int = 1, seq: int = 0, unordered: bool = False,
                frag: int = FRAG) -> list[DataChunk]:
        data = bytes([seq % 256]) * size
        parts = [data[i:i + frag] for i in range(0, size, frag)]
        chunks = []
        for i, part in enumerate(parts):
            flags = (SCTP_DATA_FIRST_FRAG if i == 0 else 0) | (SCTP_DATA_LAST_FRAG if i == len(parts) - 1 else 0)
            c = DataChunk(flags=flags | (SCTP_DATA_UNORDERED if unordered else 0))
            c.tsn, c.stream_id, c.stream_seq, c.protocol, c.user_data = self.tsn, stream, seq, WEBRTC_BINARY, part
            self.tsn += 1
            chunks.append(c)
        return chunks

    async def feed(self, chunks: list[DataChunk]) -> None:
        for c in chunks:
            await self.t._receive_data_chunk(c)

    def buffered(self) -> int:
        return sum(len(s.reassembly) for s in self.t._inbound_streams.values())


def test_the_answer_advertises_the_enforced_limit() -> None:
    assert Assoc().t.getCapabilities().maxMessageSize == LIMIT


async def test_messages_up_to_the_limit_are_delivered() -> None:
    a = Assoc()
    await a.feed(a.message(LIMIT, seq=0) + a.message(10, seq=1))
    assert [len(d) for _, d in a.delivered] == [LIMIT, 10] and a.refused == []
    assert a.t._advertised_rwnd == RWND and a.buffered() == 0


async def test_an_oversized_message_is_cut_at_the_limit_and_the_next_one_is_delivered() -> None:
    a = Assoc()
    big = a.message(100 * FRAG, seq=0)
    await a.feed(big[:12])  # past 10,000 bytes at the 11th fragment
    assert a.refused == [11 * FRAG] and a.buffered() == 0  # refused at once, nothing kept
    await a.feed(big[12:])  # the rest: acknowledged, dropped
    assert a.buffered() == 0 and a.t._last_received_tsn == big[-1].tsn  # all SACKed, the association goes on
    await a.feed(a.message(500, seq=1))  # the next ordered message is not stuck behind the refused one
    assert [len(d) for _, d in a.delivered] == [500] and a.refused == [11 * FRAG]
    assert a.t._advertised_rwnd == RWND


async def test_out_of_order_fragments_are_counted_too() -> None:
    a = Assoc()
    big = a.message(30 * FRAG, seq=0)
    await a.feed([big[0]] + big[2:12])  # fragment 1 missing: the run before each one has a gap
    await a.feed([big[1]])  # fills the gap: the message so far is now 12 fragments
    assert a.refused and a.buffered() == 0
    await a.feed(big[12:] + a.message(10, seq=1))
    assert [len(d) for _, d in a.delivered] == [10]


async def test_unordered_oversized_message_is_refused() -> None:
    a = Assoc()
    await a.feed(a.message(20 * FRAG, unordered=True) + a.message(10, unordered=True))
    assert len(a.refused) == 1 and [len(d) for _, d in a.delivered] == [10]


async def test_tiny_fragments_cannot_make_reassembly_quadratic() -> None:
    """A message under the byte limit split into thousands of 1-byte fragments is refused too."""
    a = Assoc()
    await a.feed(a.message(5000, frag=1))
    assert len(a.refused) == 1 and a.limit.max_fragments < 5000 and a.buffered() == 0


async def test_incomplete_fragments_on_a_stream_are_bounded() -> None:
    """Middle fragments that never complete (no first fragment) cannot pile up without limit."""
    a = Assoc()
    for _ in range(4 * a.limit.max_pending_fragments):
        chunks = a.message(3 * FRAG, seq=0)
        await a.feed(chunks[1:2])  # only a middle fragment of each
    assert a.buffered() <= a.limit.max_pending_fragments
    assert a.refused
