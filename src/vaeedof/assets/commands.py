"""`vaeedof assets list|build|fetch|pin`: what each action does, printed for people."""

from __future__ import annotations

import os

from . import build, fetch, registry


def run(action: str, names: list[str], params: dict | None, resources: str | os.PathLike) -> None:
    if action == "list":
        for name, asset in sorted(registry.REGISTRY.items()):
            pin = asset.sha256 or (asset.git_blob and f"git:{asset.git_blob}") or "UNPINNED"
            print(f"{name:48s} {asset.kind:5s} {pin}")
    elif action == "build":
        build.build(params, resources)
    elif action == "fetch":
        for name in names:
            asset = registry.with_pins(registry.lookup(name), params["assets"]["pins"].get(name))
            path = fetch.resolve(asset, resources, params["assets"]["mirrors"])
            if asset.kind.startswith("metric:"):
                path = fetch.install_metric_weights(asset, path)
            print(path)
    elif action == "pin":
        for name in names:
            print(f"{name} sha256={fetch.pin(registry.lookup(name), resources)}")
