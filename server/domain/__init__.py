"""What a learning community does: one module per concept, its commands, events and rules.

Each module registers its gateway commands on a ``router``; the operator's
commands and imports call the same functions, so every rule lives once.
"""
