"""The JSON-RPC 2.0 face: a pure engine, the WebSocket channel, OpenRPC.

The app serves :func:`serve_channel` at ``/rpc`` for each WebSocket, with one
shared :class:`ConnectionSet` whose :meth:`~ConnectionSet.close_all` runs on
shutdown.
"""

from nebula.rpc.channel import ChannelLimits, Disconnected, WebSocket, serve_channel
from nebula.rpc.connections import ChannelStatistics, ConnectionSet
from nebula.rpc.methods import channel_operations
from nebula.rpc.openrpc import document

__all__ = [
    "ChannelLimits",
    "ChannelStatistics",
    "ConnectionSet",
    "Disconnected",
    "WebSocket",
    "channel_operations",
    "document",
    "serve_channel",
]
