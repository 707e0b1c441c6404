"""The download path, tested against a local HTTP server and file mirrors: nothing downloads."""

import functools
import hashlib
import http.server
import subprocess
import threading

import pytest

from vaeedof.assets import fetch, registry
from vaeedof.errors import VaeedofError
from vaeedof.hashing import git_blob_id

from .conftest import SHARED_MIRROR


@pytest.fixture
def served(tmp_path):
    """A local HTTP server over tmp_path/www; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _asset(payload: bytes, url: str, **pins) -> registry.RemoteAsset:
    return registry.RemoteAsset(name="test/asset", filename="asset.bin", url=url, kind="vae", **pins)


def test_download_verifies_and_records(served, tmp_path):
    www, base = served
    payload = b"weights" * 1000
    (www / "asset.bin").write_bytes(payload)
    asset = _asset(payload, f"{base}/asset.bin", sha256=hashlib.sha256(payload).hexdigest())
    path = fetch.resolve(asset, tmp_path / "res", mirrors=[])
    assert path.read_bytes() == payload
    manifest = fetch.Manifest(tmp_path / "res/downloads/manifest.json").load()
    assert manifest["test/asset"]["source"] == asset.url
    # Second call uses the verified copy: the server may be gone.
    (www / "asset.bin").unlink()
    assert fetch.resolve(asset, tmp_path / "res", mirrors=[]) == path


def test_download_mismatch_deletes_and_fails(served, tmp_path):
    www, base = served
    (www / "asset.bin").write_bytes(b"evil")
    asset = _asset(b"", f"{base}/asset.bin", sha256="0" * 64)
    with pytest.raises(VaeedofError, match="checksum mismatch"):
        fetch.resolve(asset, tmp_path / "res", mirrors=[])
    assert not (tmp_path / "res/downloads/asset.bin").exists()


def test_download_failure_is_clear(tmp_path):
    asset = _asset(b"", "http://127.0.0.1:9/missing.bin", sha256="0" * 64)
    with pytest.raises(VaeedofError, match="download failed"):
        fetch._download(asset.url, tmp_path / "x", retries=1, timeout=2)
    assert not (tmp_path / "x").exists()


def test_file_url_download(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"abc" * 100)
    asset = _asset(b"", source.as_uri(), sha256=hashlib.sha256(b"abc" * 100).hexdigest())
    assert fetch.resolve(asset, tmp_path / "res").read_bytes() == b"abc" * 100


def test_mirror_preferred_and_tampered_mirror_skipped(tmp_path, monkeypatch):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    (good / "asset.bin").write_bytes(b"real")
    (bad / "asset.bin").write_bytes(b"fake")
    asset = _asset(b"", "http://127.0.0.1:9/unreachable", sha256=hashlib.sha256(b"real").hexdigest())
    monkeypatch.setenv(fetch.MIRROR_ENV, str(bad))
    path = fetch.resolve(asset, tmp_path / "res", mirrors=[str(good)], allow_download=False)
    assert path.read_bytes() == b"real"


def test_unpinned_asset_refused(tmp_path):
    asset = registry.lookup("polyhaven/studio_small_09")
    assert not asset.pinned
    with pytest.raises(VaeedofError, match="no pinned checksum"):
        fetch.resolve(asset, tmp_path)


def test_unknown_asset_name():
    with pytest.raises(VaeedofError, match="not registered"):
        registry.lookup("taesd9_encoder")


def test_git_blob_id_matches_git(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello\x00world" * 50)
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert git_blob_id(path) == expected


@pytest.mark.skipif(not (SHARED_MIRROR / "taef2_encoder.pth").exists(), reason="no shared mirror")
def test_taef2_from_shared_mirror_verifies(tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.MIRROR_ENV, str(SHARED_MIRROR))
    for name in ("taef2_encoder", "taef2_decoder"):
        path = fetch.resolve(registry.lookup(name), tmp_path, allow_download=False)
        assert fetch.verify(registry.lookup(name), path) is None


@pytest.mark.skipif(not (SHARED_MIRROR / "taef2_encoder.pth").exists(), reason="no shared mirror")
def test_real_weights_served_over_http(served, tmp_path):
    www, base = served
    (www / "taef2_decoder.pth").write_bytes((SHARED_MIRROR / "taef2_decoder.pth").read_bytes())
    real = registry.lookup("taef2_decoder")
    asset = registry.RemoteAsset(name=real.name, filename=real.filename, url=f"{base}/taef2_decoder.pth",
                                 kind="vae", sha256=real.sha256, git_blob=real.git_blob)
    path = fetch.resolve(asset, tmp_path / "res", mirrors=[])
    assert git_blob_id(path) == real.git_blob


def test_metric_weights_prefetch_installs_into_torch_hub(tmp_path, monkeypatch, capsys):
    from vaeedof.cli import main

    from .conftest import ROOT

    payload = b"alexnet weights" * 100
    source = tmp_path / "alexnet-owt-7be5be79.pth"
    source.write_bytes(payload)
    monkeypatch.setenv(fetch.MIRROR_ENV, str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    pin = hashlib.sha256(payload).hexdigest()
    code = main(["--params", str(ROOT / "params.yaml"), "--set", f"assets.pins={{metric/alexnet: {pin}}}",
                 "assets", "fetch", "metric/alexnet", "--resources", str(tmp_path / "res")])
    assert code == 0
    installed = tmp_path / "torch/hub/checkpoints/alexnet-owt-7be5be79.pth"
    assert installed.read_bytes() == payload
    # Without a pin it is refused.
    assert main(["--params", str(ROOT / "params.yaml"), "assets", "fetch", "metric/vgg16",
                 "--resources", str(tmp_path / "res")]) == 2
    assert "no pinned checksum" in capsys.readouterr().err
