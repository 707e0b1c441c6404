"""Downloadable assets: URL plus a pinned checksum (sha256 or upstream git blob id).

An entry without any checksum can never be used: the resolver refuses it and says how to pin it.
"""

from __future__ import annotations

import csv
import dataclasses
from importlib import resources

from ..errors import VaeedofError

TAESD_COMMIT = "5cccb12dc72074a4be35680c3b108548a7c69978"
_TAESD_RAW = f"https://raw.githubusercontent.com/madebyollin/taesd/{TAESD_COMMIT}"


@dataclasses.dataclass(frozen=True)
class RemoteAsset:
    name: str
    filename: str
    url: str
    kind: str  # "vae", "hdri", "photo" or "metric:<hub folder>"
    sha256: str | None = None
    git_blob: str | None = None
    license: str = ""
    credit: str = ""  # attribution that travels with every scene using the asset

    @property
    def pinned(self) -> bool:
        return bool(self.sha256 or self.git_blob)


def _taesd(filename: str, sha256: str | None = None, git_blob: str | None = None) -> RemoteAsset:
    return RemoteAsset(
        name=filename.removesuffix(".pth"),
        filename=filename,
        url=f"{_TAESD_RAW}/{filename}",
        kind="vae",
        sha256=sha256,
        git_blob=git_blob,
        license="MIT (madebyollin/taesd)",
    )


def _polyhaven(slug: str, resolution: str = "1k") -> RemoteAsset:
    # Poly Haven publishes no checksums in its file URLs: these stay unpinned until a user pins
    # them (`vaeedof assets pin NAME` on a connected machine), and are refused until then.
    filename = f"{slug}_{resolution}.hdr"
    return RemoteAsset(
        name=f"polyhaven/{slug}",
        filename=filename,
        url=f"https://dl.polyhaven.org/file/ph-assets/HDRIs/hdr/{resolution}/{filename}",
        kind="hdri",
        license="CC0 (Poly Haven)",
    )


def _metric_weights(name: str, filename: str, url: str, hub_path: str) -> RemoteAsset:
    # Learned-metric weights (LPIPS, DISTS, PieAPP): fetched on a connected machine, then copied
    # into the torch hub cache (`vaeedof assets fetch <name>` installs them there) so a compute node
    # needs no network. Their publishers give no full checksum: pin before use.
    return RemoteAsset(name=name, filename=filename, url=url, kind=f"metric:{hub_path}",
                       license="see the metric's publisher")


def _catalog(table: str, kind: str, folder: str) -> list[RemoteAsset]:
    """Photographs and real HDRIs: one row per file in catalog/<table>.csv (URL at a pinned
    upstream commit, sha256, git blob id, credit). Their filename keeps the mirror's folder."""
    with resources.files(__package__).joinpath("catalog", table).open(newline="") as handle:
        return [RemoteAsset(name=f"{kind}/{row['file'].rsplit('.', 1)[0]}",
                            filename=f"{folder}/{row['file']}", url=row["url"], kind=kind,
                            sha256=row["sha256"], git_blob=row["git_blob"],
                            license=row["license"], credit=row["credit"])
                for row in csv.DictReader(handle)]


PHOTOS = _catalog("photos.csv", "photo", "photos")
REAL_HDRIS = _catalog("hdris.csv", "hdri", "hdri")

_TV = "https://download.pytorch.org/models"
_PYIQA = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main"

REGISTRY: dict[str, RemoteAsset] = {
    asset.name: asset
    for asset in [
        _taesd("taef2_encoder.pth",
               sha256="10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
               git_blob="8d738aba02f7ba9d156712489322dc5c43d5db1c"),
        _taesd("taef2_decoder.pth",
               sha256="0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
               git_blob="f4da1ec48cb805b5ee8deb22cfad03f48fe52f64"),
        _taesd("taesd3_encoder.pth", git_blob="9678667c0e3e4b648a36daaa8094b1732ae4fb67"),
        _taesd("taesd3_decoder.pth", git_blob="7943be72a9151d0b330c5d8a4fbb885d889b60a1"),
        # Same layout, checksums not recorded here: pin them with vae.sha256 in params.yaml.
        *(_taesd(f"{name}_{part}.pth") for name in ("taesd", "taesdxl", "taef1")
          for part in ("encoder", "decoder")),
        _polyhaven("kloofendal_48d_partly_cloudy_puresky"),
        _polyhaven("studio_small_09"),
        _polyhaven("photo_studio_loft_hall"),
        *PHOTOS,
        *REAL_HDRIS,
        _metric_weights("metric/alexnet", "alexnet-owt-7be5be79.pth", f"{_TV}/alexnet-owt-7be5be79.pth",
                        "checkpoints"),
        _metric_weights("metric/vgg16", "vgg16-397923af.pth", f"{_TV}/vgg16-397923af.pth", "checkpoints"),
        _metric_weights("metric/lpips_alex", "LPIPS_v0.1_alex-df73285e.pth",
                        f"{_PYIQA}/LPIPS_v0.1_alex-df73285e.pth", "pyiqa"),
        _metric_weights("metric/dists", "DISTS_weights-f5e65c96.pth",
                        f"{_PYIQA}/DISTS_weights-f5e65c96.pth", "pyiqa"),
        _metric_weights("metric/pieapp", "PieAPPv0.1-0937b014.pth", f"{_PYIQA}/PieAPPv0.1-0937b014.pth",
                        "pyiqa"),
    ]
}


def with_pins(asset: RemoteAsset, sha256: str | None) -> RemoteAsset:
    """The same asset pinned to a user-given sha256 (for entries without a recorded checksum)."""
    if not sha256:
        return asset
    return dataclasses.replace(asset, sha256=sha256)


def lookup(name: str) -> RemoteAsset:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise VaeedofError(f"asset '{name}': not registered (known: {known})") from None
