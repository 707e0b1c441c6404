"""A JSON manifest of what was fetched or generated, updated atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .. import atomic


class Manifest:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> dict:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text())

    def record(self, name: str, entry: dict) -> None:
        data = self.load()
        data[name] = entry
        atomic.write_json(self.path, data)
