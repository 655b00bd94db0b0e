"""Fast, forgettable state shared by a deployment's processes: presence, claims, counters.

In-process in the embedded deployment (``memory``), in Redis in the scaled
one (``redis``). Nothing here must survive a restart: losing it all costs a
moment of wrong presence dots and a slow-mode interval forgotten.
"""

from server.live.base import STATUSES, LiveState, OnPresenceChange, aggregate
from server.live.memory import MemoryLiveState

__all__ = ["STATUSES", "LiveState", "MemoryLiveState", "OnPresenceChange", "aggregate"]
