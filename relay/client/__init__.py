"""relay's Python device SDK: what a device (or a load tester) runs to talk to relay.

See docs/client.md. Main entry point: :class:`RelayClient`.
"""

from relay.client.client import RelayClient, Timings, ice_servers_from_session
from relay.client.codec import PacketDecoder, encode_pcm16_to_opus, read_wav_pcm16
from relay.client.errors import ConnectError, RelayError, parse_error
from relay.client.ice import host_addresses
from relay.client.receiver import AudioReceiver, ReceiveStats
from relay.client.sources import OpusPacketTrack, PcmGeneratorTrack, silence_track, wav_track

__all__ = [
    "AudioReceiver",
    "ConnectError",
    "OpusPacketTrack",
    "PacketDecoder",
    "PcmGeneratorTrack",
    "ReceiveStats",
    "RelayClient",
    "RelayError",
    "Timings",
    "encode_pcm16_to_opus",
    "host_addresses",
    "ice_servers_from_session",
    "parse_error",
    "read_wav_pcm16",
    "silence_track",
    "wav_track",
]
