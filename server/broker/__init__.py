from server.broker.base import Broker, OnMessage
from server.broker.memory import MemoryBroker

__all__ = ["Broker", "MemoryBroker", "OnMessage"]
