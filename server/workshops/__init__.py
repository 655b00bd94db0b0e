"""Workshops: live sessions in a ``workshop`` channel, and the recap that stays.

``live`` keeps each workshop's state as a fold of its channel's events and
stores every change through one optimistic commit; the other modules are one
concept each (agenda and timers, hands, polls, questions, breakouts, pulse,
the recap and participation), with their commands, events and checks.
"""
