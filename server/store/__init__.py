from server.store.base import (
    Appended,
    Channel,
    Community,
    CommunityView,
    Conflict,
    LogHead,
    Store,
    User,
)

__all__ = [
    "Appended",
    "Channel",
    "Community",
    "CommunityView",
    "Conflict",
    "LogHead",
    "Store",
    "User",
]
