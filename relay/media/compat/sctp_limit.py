"""The device's data-channel message size limit, enforced while SCTP reassembles a message.

aiortc reassembles a fragmented message before anyone can look at its size, and its
reassembly rescans every buffered fragment for each new one (``InboundStream.pop_messages``):
a device ignoring the answer's ``a=max-message-size`` and sending one 16 MB message
(~14,000 fragments) costs the worker ~10^8 steps of Python and all that memory before
relay's own size check runs, so every call on the worker stalls.

``MessageSizeLimit.install(sctp, max_bytes, on_refused)`` hooks one peer's
``RTCSctpTransport`` (instance attributes; nothing global changes):

- the SDP answer advertises ``a=max-message-size: max_bytes`` (``getCapabilities``), the
  limit that is enforced;
- each DATA chunk is checked *before* aiortc buffers it: if the message it belongs to would
  pass ``max_bytes`` (or more fragments than a sender honouring the limit uses), the
  fragments of that message already buffered are dropped, the rest of the message is
  acknowledged (so the association goes on) but never buffered, and ``on_refused(bytes)``
  is called once for the message. A stream that piles up more incomplete fragments than
  that (gaps that never fill) is cut the same way. Memory per stream is then at most
  about ``max_bytes`` (plus what complete messages waiting behind a lost one hold, which
  aiortc's receive window already bounds for a well-behaved sender), and the reassembly
  cost per message at most ~(max_bytes / fragment size)^2 / 2 steps.

Every private aiortc name used is a row of ``relay.media.compat.TABLE`` (checked once at start-up).
The whole module is a patch of aiortc's SCTP receive path (a compat module); the limit itself is
the caller's (``relay.media.peer``: ``dc_max_message_bytes``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_LAST_FRAG,
    SCTP_DATA_UNORDERED,
    RTCSctpCapabilities,
)

log = logging.getLogger("relay.media")

#: a sender honouring the limit sends fragments of ~1,100-1,200 bytes (aiortc 1,160; browsers
#: fill the path MTU); a message in more fragments than max_bytes / this is refused too
MIN_FRAGMENT_BYTES = 256
#: incomplete fragments one stream may hold, in messages' worth
MAX_PENDING_MESSAGES = 4

TSN_MODULO = 1 << 32


def _tsn_gt(a: int, b: int) -> bool:
    return a != b and (a - b) % TSN_MODULO < TSN_MODULO // 2


def _tsn_gte(a: int, b: int) -> bool:
    return a == b or _tsn_gt(a, b)


@dataclass
class _Refused:
    """A message being refused on one stream: its fragments from ``first_tsn`` on are dropped."""

    first_tsn: int
    stream_seq: int
    ordered: bool
    last_tsn: int | None = None


class MessageSizeLimit:
    def __init__(self, sctp: Any, max_bytes: int, on_refused: Callable[[int], None],
                 log_extra: dict[str, str] | None = None) -> None:
        self._sctp = sctp
        self._log_extra = log_extra or {}
        self.max_bytes = max_bytes
        self.max_fragments = max_bytes // MIN_FRAGMENT_BYTES + 2
        self.max_pending_fragments = self.max_fragments * MAX_PENDING_MESSAGES
        self._on_refused = on_refused
        self._original = sctp._receive_data_chunk
        self._refused: dict[int, _Refused] = {}
        # per stream: (tsn, bytes, fragments) of the newest buffered fragment's message so far
        self._tail: dict[int, tuple[int, int, int]] = {}
        self.refused_messages = 0

    @classmethod
    def install(cls, sctp: Any, max_bytes: int, on_refused: Callable[[int], None],
                log_extra: dict[str, str] | None = None) -> MessageSizeLimit:
        limit = cls(sctp, max_bytes, on_refused, log_extra)
        sctp._receive_data_chunk = limit._receive_data_chunk
        sctp.getCapabilities = lambda: RTCSctpCapabilities(maxMessageSize=max_bytes)
        return limit

    # -- the hook ------------------------------------------------------------------
    async def _receive_data_chunk(self, chunk: Any) -> None:
        sctp = self._sctp
        tsn = chunk.tsn
        if _tsn_gte(sctp._last_received_tsn, tsn) or tsn in sctp._sack_misordered:
            await self._original(chunk)  # a duplicate: aiortc reports it in the next SACK
            return
        sid = chunk.stream_id
        refused = self._refused.get(sid)
        if refused is not None:
            if refused.last_tsn is not None and _tsn_gte(sctp._last_received_tsn, refused.last_tsn):
                del self._refused[sid]  # every fragment of it has arrived
                refused = None
            elif _tsn_gt(tsn, refused.first_tsn) and (refused.last_tsn is None or _tsn_gte(refused.last_tsn, tsn)):
                await self._drop(chunk, refused)
                return
        inbound = sctp._get_inbound_stream(sid)
        size, fragments = self._message_so_far(sid, inbound, chunk)
        if size > self.max_bytes or fragments > self.max_fragments or \
                len(inbound.reassembly) >= self.max_pending_fragments:
            await self._refuse(chunk, inbound, size)
            return
        tail = self._tail.get(sid)
        if not chunk.flags & SCTP_DATA_LAST_FRAG and (tail is None or _tsn_gt(tsn, tail[0])):
            self._tail[sid] = (tsn, size, fragments)
        await self._original(chunk)

    def _message_so_far(self, sid: int, inbound: Any, chunk: Any) -> tuple[int, int]:
        """Bytes and fragments of ``chunk``'s message buffered so far, ``chunk`` included."""
        own = len(chunk.user_data)
        tail = self._tail.get(sid)
        if tail is not None and (tail[0] + 1) % TSN_MODULO == chunk.tsn and not chunk.flags & SCTP_DATA_FIRST_FRAG:
            return tail[1] + own, tail[2] + 1  # the common case: the next fragment in order
        # out of order (or a first fragment): the consecutive TSNs buffered around it, up to the
        # message's first fragment before it and its last one after it
        before = [c for c in inbound.reassembly if _tsn_gt(chunk.tsn, c.tsn)]
        after = [c for c in inbound.reassembly if _tsn_gt(c.tsn, chunk.tsn)]
        size, fragments = own, 1
        if not chunk.flags & SCTP_DATA_FIRST_FRAG:
            expected = (chunk.tsn - 1) % TSN_MODULO
            for buffered in reversed(before):
                if buffered.tsn != expected:
                    break
                size += len(buffered.user_data)
                fragments += 1
                if buffered.flags & SCTP_DATA_FIRST_FRAG:
                    break
                expected = (expected - 1) % TSN_MODULO
        last_tsn = chunk.tsn
        if not chunk.flags & SCTP_DATA_LAST_FRAG:
            expected = (chunk.tsn + 1) % TSN_MODULO
            for buffered in after:
                if buffered.tsn != expected or buffered.flags & SCTP_DATA_FIRST_FRAG:
                    break
                size += len(buffered.user_data)
                fragments += 1
                last_tsn = buffered.tsn
                if buffered.flags & SCTP_DATA_LAST_FRAG:
                    break
                expected = (expected + 1) % TSN_MODULO
        if tail is not None and tail[0] == last_tsn:
            self._tail[sid] = (last_tsn, size, fragments)  # the newest fragment's count, gap filled
        return size, fragments

    async def _refuse(self, chunk: Any, inbound: Any, size: int) -> None:
        """Drop the buffered fragments of ``chunk``'s message and refuse the rest of it."""
        sctp = self._sctp
        sid = chunk.stream_id
        first_tsn = chunk.tsn
        if not chunk.flags & SCTP_DATA_FIRST_FRAG:
            expected = (chunk.tsn - 1) % TSN_MODULO
            keep = list(inbound.reassembly)
            for i in range(len(keep) - 1, -1, -1):
                buffered = keep[i]
                if buffered.tsn != expected:
                    if _tsn_gt(buffered.tsn, chunk.tsn):
                        continue  # fragments after this one (arrived early) are dropped below
                    break
                del keep[i]
                sctp._advertised_rwnd += len(buffered.user_data)
                first_tsn = buffered.tsn
                if buffered.flags & SCTP_DATA_FIRST_FRAG:
                    break
                expected = (expected - 1) % TSN_MODULO
            # fragments of the same message that arrived ahead of this one
            later = [c for c in keep if _tsn_gt(c.tsn, chunk.tsn)]
            for c in later:
                keep.remove(c)
                sctp._advertised_rwnd += len(c.user_data)
            inbound.reassembly = keep
        self._tail.pop(sid, None)
        refused = _Refused(first_tsn=first_tsn, stream_seq=chunk.stream_seq,
                           ordered=not chunk.flags & SCTP_DATA_UNORDERED)
        self._refused[sid] = refused
        self.refused_messages += 1
        log.warning("data-channel message over %d bytes (%d so far) refused while reassembling",
                    self.max_bytes, size, extra=self._log_extra)
        self._on_refused(size)
        await self._drop(chunk, refused)

    async def _drop(self, chunk: Any, refused: _Refused) -> None:
        """Acknowledge a fragment of a refused message without buffering it."""
        sctp = self._sctp
        sctp._sack_needed = True
        sctp._mark_received(chunk.tsn)
        if not chunk.flags & SCTP_DATA_LAST_FRAG:
            return
        refused.last_tsn = chunk.tsn
        inbound = sctp._get_inbound_stream(chunk.stream_id)
        if refused.ordered and inbound.sequence_number == refused.stream_seq:
            inbound.sequence_number = (refused.stream_seq + 1) % (1 << 16)
        # ordered messages that waited behind the refused one
        for message in inbound.pop_messages():
            sctp._advertised_rwnd += len(message[2])
            await sctp._receive(*message)
