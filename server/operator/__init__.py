"""The operator's ``agora`` command line: serve, workers, admin commands, export and import."""
