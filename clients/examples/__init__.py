"""Example bots; each runs with ``python -m clients.examples.NAME --help``."""
