"""Tokens remembered per server, in ``$XDG_CONFIG_HOME/agora/tokens.json``.

A token is as good as a password, so the directory is created 0700 and the
file is written 0600 before any secret goes into it, then moved into place.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def config_dir() -> Path:
    # the XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "agora"


class TokenStore:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        self.path = self.directory / "tokens.json"

    def get(self, server: str) -> dict[str, Any] | None:
        """``{token, username}`` remembered for ``server``, if any."""
        entry = self._read().get(server)
        return entry if isinstance(entry, dict) and isinstance(entry.get("token"), str) else None

    def put(self, server: str, token: str, username: str) -> None:
        tokens = self._read()
        tokens[server] = {"token": token, "username": username}
        self._write(tokens)

    def forget(self, server: str) -> bool:
        tokens = self._read()
        if tokens.pop(server, None) is None:
            return False
        self._write(tokens)
        return True

    def _read(self) -> dict[str, Any]:
        try:
            tokens = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return tokens if isinstance(tokens, dict) else {}

    def _write(self, tokens: dict[str, Any]) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(tokens, f, indent=2)
        os.replace(temporary, self.path)
