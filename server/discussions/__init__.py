"""Discussions: threads and forums, reactions, pins, mentions, read state, direct
messages, typing, search and the resource shelf.

Like ``server.domain``, one module per concept registers its gateway commands on a
``router``; messages themselves (send, edit, delete) stay in ``domain.messages``.
"""
