from server.store.base import (
    Appended,
    Channel,
    Community,
    CommunityView,
    Conflict,
    LogHead,
    Store,
    Unavailable,
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
    "Unavailable",
    "User",
]
