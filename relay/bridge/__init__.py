"""The sans-I/O call core: device and upstream events plus ``now`` in, actions out.

See ``relay.bridge.core.CallCore`` for the contract with the I/O edge.
"""

from relay.bridge.actions import (
    Action,
    EndCall,
    RecordUsage,
    RecycleUpstream,
    RunServerTool,
    SendDevice,
    SendUpstream,
)
from relay.bridge.core import CallCore, append_json

__all__ = [
    "Action",
    "CallCore",
    "EndCall",
    "RecordUsage",
    "RecycleUpstream",
    "RunServerTool",
    "SendDevice",
    "SendUpstream",
    "append_json",
]
