from server.store.base import (
    Appended,
    Channel,
    CommunityView,
    Conflict,
    LogHead,
    Store,
    User,
)

__all__ = ["Appended", "Channel", "CommunityView", "Conflict", "LogHead", "Store", "User"]
