"""The socket side: the WebSocket endpoint, sessions, their outboxes, and fan-out.

``endpoint`` accepts a connection and runs a ``session``; a session decodes
frames and hands each command to the handler a domain module registered on
its ``router``; ``hub`` fans each channel's events out to the local sessions'
``outbox``es, written by ``transport``. Nothing here knows what a community
or a message is.
"""
