"""Reliability and security cases (docs/reliability.md lists them all with their behaviour):
interruption by SIGKILL, a full disk, truncated downloads, MLflow stores that cannot be written,
checkpoints that are not what they claim, bad fuse inputs."""

import copy
import functools
import hashlib
import http.server
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vaeedof.assets import fetch, registry
from vaeedof.cli import main
from vaeedof.errors import VaeedofError
from vaeedof.training import latents
from vaeedof.training.state import checkpoint_path, latest_checkpoint, load_checkpoint

from .conftest import SHARED_MIRROR, tiny_params
from .synthetic import export_tiny_checkpoint, make_latent_set, random_vae, write_patch_set

BIN = Path(sys.executable).parent
CLOSED_PORT_URI = "http://127.0.0.1:9"  # nothing listens on the discard port


def _train_params(**train):
    params = tiny_params()
    params["model"].update(max_inputs=3, widths=[32, 64, 128], attention_heads=2)
    params["train"].update(dict(steps=300, global_batch=4, lr=1e-3, warmup_steps=2, checkpoint_every=10,
                                keep_checkpoints=2, val_every=0, log_every=10, hybrid_weight=0.0) | train)
    params["patches"].update(size=32)
    return params


def _write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(copy.deepcopy(params)))
    return path


def _kill_when(process: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """SIGKILL the process as soon as ready() holds (it must not have finished by then)."""
    deadline = time.time() + timeout
    while not ready():
        assert process.poll() is None, "finished before it could be interrupted"
        assert time.time() < deadline, "never reached the point to interrupt"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _env(**extra):
    return dict(os.environ, **extra)


# ---------------------------------------------------------------------------------------------
# Interruption
# ---------------------------------------------------------------------------------------------


def test_sigkill_during_training_resumes_same_run_same_weights(tmp_path):
    from safetensors.torch import load_file

    patches, cache = make_latent_set(tmp_path, count=16)
    params_file = _write_params(tmp_path / "params.yaml", _train_params())
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [str(BIN / "vaeedof"), "--params", str(params_file), "train", "--latents", str(cache),
               "--patches", str(patches), "--device", "cpu", "--out"]
    env = _env(MLFLOW_TRACKING_URI=store)
    process = subprocess.Popen([*command, str(tmp_path / "killed")], env=env, stderr=subprocess.DEVNULL)
    _kill_when(process, lambda: len(list((tmp_path / "killed").rglob("step_*.pt"))) >= 2)
    assert not (tmp_path / "killed/fusion_ema.safetensors").exists()
    done = subprocess.run([*command, str(tmp_path / "killed")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stderr
    import mlflow

    client = mlflow.tracking.MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("vaeedof").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # the same run, continued
    info = json.loads((tmp_path / "killed/fusion_ema.json").read_text())
    assert info["mlflow_run_id"] == runs[0].info.run_id
    # An uninterrupted run reaches the same weights, bit for bit.
    clean = subprocess.run([*command, str(tmp_path / "clean"), "--no-mlflow"], env=env,
                           capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr[-2000:]
    a, b = (load_file(str(tmp_path / f"{d}/fusion_ema.safetensors")) for d in ("killed", "clean"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.blender
@pytest.mark.slow
def test_sigkill_during_render_leaves_no_complete_looking_scene(tmp_path):
    pytest.importorskip("bpy")
    params = tiny_params()
    params["render"].update(resolution=96, samples=32)
    params_file = _write_params(tmp_path / "params.yaml", params)
    cli = [str(BIN / "vaeedof"), "--params", str(params_file)]
    subprocess.run([*cli, "assets", "build"], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run([*cli, "scenes", "--assets", "resources/assets/index.json", "--out", "scenes"],
                   cwd=tmp_path, check=True, capture_output=True)
    out = tmp_path / "rendered/train_00000"
    render = [*cli, "render", "--scene", "scenes/train/train_00000.json", "--out", str(out),
              "--threads", "1"]
    process = subprocess.Popen(render, cwd=tmp_path, stderr=subprocess.DEVNULL)
    partial = tmp_path / "rendered"
    _kill_when(process, lambda: partial.exists() and any(partial.rglob("*.png")))
    assert not (out / "scene.json").exists()  # nothing that looks complete
    done = subprocess.run(render, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "scene.json").exists() and (out / "gt.png").exists()
    assert len(list(out.glob("focus_*.png"))) == 6


@pytest.mark.skipif(not (SHARED_MIRROR / "taef2_encoder.pth").exists(), reason="no TAEF2 weights")
def test_sigkill_during_latent_caching_then_resume_matches_clean_build(tmp_path):
    write_patch_set(tmp_path / "patches", count=128, val=256, size=64, inputs=3)
    params_file = _write_params(tmp_path / "params.yaml", tiny_params())
    env = _env(VAEEDOF_ASSET_MIRROR=str(SHARED_MIRROR))
    command = [str(BIN / "vaeedof"), "--params", str(params_file), "latents", "--patches",
               str(tmp_path / "patches"), "--resources", str(tmp_path / "res"), "--out"]
    process = subprocess.Popen([*command, str(tmp_path / "killed")], env=env, stderr=subprocess.DEVNULL)
    _kill_when(process, lambda: (tmp_path / "killed/progress.json").exists())
    assert not (tmp_path / "killed/manifest.json").exists()  # an unfinished cache is never used
    for run_dir in ("killed", "clean"):
        done = subprocess.run([*command, str(tmp_path / run_dir)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    for shard in ("train/shard_00000.npy", "val/shard_00000.npy"):
        assert np.array_equal(np.load(tmp_path / "killed" / shard), np.load(tmp_path / "clean" / shard))


def _fake_evaluation(root: Path, scenes: int = 12, size: int = 256):
    rng = np.random.default_rng(0)
    for index in range(scenes):
        scene = root / f"data/test_{index:05d}"
        scene.mkdir(parents=True)
        gt = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(gt).save(scene / "gt.png")
        for k in range(2):
            Image.fromarray(gt // (k + 2)).save(scene / f"focus_{k}.png")
        (scene / "scene.json").write_text(json.dumps({"focus_order": [0, 1]}))
        for method in ("mean", "laplacian"):
            noisy = np.clip(gt + rng.normal(0, 8, gt.shape), 0, 255).astype(np.uint8)
            (root / "fused" / method).mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy).save(root / "fused" / method / f"{scene.name}.png")
    (root / "fused/manifest.json").write_text(json.dumps(
        {"methods": ["laplacian", "mean"], "scenes": [f"test_{i:05d}" for i in range(scenes)]}))
    (root / "model.safetensors").write_bytes(b"weights")
    (root / "model.json").write_text(json.dumps({"vae": "taef2", "mlflow_run_id": None}))


def test_sigkill_during_evaluation_leaves_old_or_no_reports(tmp_path):
    _fake_evaluation(tmp_path)
    params_file = _write_params(tmp_path / "params.yaml", tiny_params())
    command = [str(BIN / "vaeedof"), "--params", str(params_file), "evaluate", "--data", "data",
               "--fused", "fused", "--reports", "reports", "--checkpoint", "model.safetensors",
               "--no-mlflow"]
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.DEVNULL)
    started = time.time()
    _kill_when(process, lambda: time.time() - started > 4)  # imports done, scoring under way
    assert not (tmp_path / "reports/metrics.json").exists() or json.loads(
        (tmp_path / "reports/metrics.json").read_text())
    assert not list((tmp_path / "reports").glob(".*.tmp*")) if (tmp_path / "reports").exists() else True
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "reports/metrics.json").read_text())
    assert metrics["checkpoint"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert metrics["data_version"]["sha256"] and metrics["git_commit"]


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


def test_disk_full_while_writing_a_shard_keeps_finished_work(tmp_path, monkeypatch, capsys):
    write_patch_set(tmp_path / "patches", count=8, val=4, size=32, inputs=3)
    real_save = np.save
    calls = {"n": 0}

    def full_disk(path, array, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second shard: the disk fills up half-way through writing it
            with open(path, "wb") as handle:
                handle.write(b"\x93NUMPY partial")
            raise OSError(28, "No space left on device", str(path))
        return real_save(path, array, *args, **kwargs)

    monkeypatch.setattr(latents.np, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        latents.build(random_vae(), tmp_path / "patches", tmp_path / "cache")
    cache = tmp_path / "cache"
    assert (cache / "train/shard_00000.npy").exists() and not (cache / "val/shard_00000.npy").exists()
    assert not [p for p in cache.rglob("*") if ".tmp" in p.name]  # no partial file left behind
    assert not (cache / "manifest.json").exists()
    monkeypatch.setattr(latents.np, "save", real_save)
    latents.build(random_vae(), tmp_path / "patches", cache)
    assert (cache / "manifest.json").exists() and (cache / "val/shard_00000.npy").exists()


def test_oserror_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    write_patch_set(tmp_path / "patches", count=4, val=2, size=32, inputs=3)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "cache/train/shard_00000.npy"))

    monkeypatch.setattr(latents, "build", no_space)
    code = main(["--params", str(_write_params(tmp_path / "p.yaml", tiny_params())), "latents",
                 "--patches", str(tmp_path / "patches"), "--out", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "shard_00000.npy: No space left on device" in err[0]


class _LyingHandler(http.server.BaseHTTPRequestHandler):
    """Announces the full size, sends half, then drops the connection."""

    payload = b""

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload[: len(self.payload) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_download_interrupted_halfway_never_takes_the_final_name(tmp_path, monkeypatch):
    payload = os.urandom(1 << 16)
    handler = type("Handler", (_LyingHandler,), {"payload": payload})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(fetch.time, "sleep", lambda s: None)
    asset = registry.RemoteAsset(name="test/asset", filename="asset.bin", kind="vae",
                                 url=f"http://127.0.0.1:{server.server_address[1]}/asset.bin",
                                 sha256=hashlib.sha256(payload).hexdigest())
    try:
        with pytest.raises(VaeedofError, match="download failed"):
            fetch.resolve(asset, tmp_path / "res", mirrors=[])
    finally:
        server.shutdown()
    downloads = tmp_path / "res/downloads"
    assert not (downloads / "asset.bin").exists()
    assert not [p for p in downloads.rglob("*") if p.is_file() and p.name != "manifest.json"]
    # The next run (the file now served whole) completes and verifies.
    www = tmp_path / "www"
    www.mkdir()
    (www / "asset.bin").write_bytes(payload)
    whole = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www)))
    threading.Thread(target=whole.serve_forever, daemon=True).start()
    try:
        good = registry.RemoteAsset(name="test/asset", filename="asset.bin", kind="vae",
                                    url=f"http://127.0.0.1:{whole.server_address[1]}/asset.bin",
                                    sha256=asset.sha256)
        assert fetch.resolve(good, tmp_path / "res", mirrors=[]).read_bytes() == payload
    finally:
        whole.shutdown()


@pytest.mark.parametrize("uri", [CLOSED_PORT_URI, "sqlite:////proc/vaeedof-mlflow.db"],
                         ids=["unreachable", "read-only"])
def test_mlflow_store_that_cannot_be_written_fails_before_training(tmp_path, monkeypatch, uri):
    from vaeedof.training.train import train

    patches, cache = make_latent_set(tmp_path, count=8)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.time()
    with pytest.raises(VaeedofError, match="unreachable or not writable.*--no-mlflow"):
        train(_train_params(steps=5), cache, patches, tmp_path / "m", track=True)
    assert time.time() - start < 90
    assert not list((tmp_path / "m").rglob("step_*.pt"))  # failed before the first step


def test_evaluate_checks_the_store_before_scoring(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////proc/vaeedof-mlflow.db")
    code = main(["--params", str(_write_params(tmp_path / "p.yaml", tiny_params())), "evaluate",
                 "--data", str(tmp_path / "nothing"), "--reports", str(tmp_path / "reports")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "MLflow tracking store" in err[0]
    assert not (tmp_path / "reports").exists()


# ---------------------------------------------------------------------------------------------
# Checkpoints that are not what they claim
# ---------------------------------------------------------------------------------------------


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_training_checkpoint_with_code_is_refused_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    with open(checkpoint_path(folder, 10), "wb") as handle:
        pickle.dump({"step": 10, "model": _RunsCode()}, handle)
    (folder / "step_00000005.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(VaeedofError, match="not a loadable checkpoint"):
        load_checkpoint(checkpoint_path(folder, 10))
    assert latest_checkpoint(folder) is None
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("case", ["garbage", "inputs", "vae"])
def test_fuse_refuses_checkpoints_that_do_not_match(tmp_path, monkeypatch, capsys, case):
    monkeypatch.setenv("VAEEDOF_ASSET_MIRROR", str(SHARED_MIRROR))
    weights = export_tiny_checkpoint(tmp_path, **({"max_inputs": 7} if case == "inputs" else {}))
    if case == "garbage":
        weights.write_bytes(b"\x00" * 100)
    if case == "vae" and not (SHARED_MIRROR / "taef2_encoder.pth").exists():
        pytest.skip("no TAEF2 weights")
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    code = main(["fuse", str(image), str(image), "-o", str(tmp_path / "out.png"), "--checkpoint",
                 str(weights), "--resources", str(tmp_path / "res"), "--no-vae-check"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    expected = {"garbage": "not a fusion checkpoint", "inputs": "does not match its JSON",
                "vae": "other taef2 weights"}[case]
    assert expected in err[0] and str(weights) in err[0]
    assert not (tmp_path / "out.png").exists()


def test_not_an_image_with_an_image_extension(tmp_path, capsys):
    good = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(good)
    fake = tmp_path / "notes.png"
    fake.write_text("this is text, not a PNG\n")
    code = main(["fuse", str(good), str(fake), "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "notes.png" in err[0]


# ---------------------------------------------------------------------------------------------
# Inputs that are unusual but valid: fused, not refused
# ---------------------------------------------------------------------------------------------


def _variant_inputs(folder: Path, case: str) -> tuple[list[Path], tuple[int, int]]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    paths = []
    if case in ("one", "eight", "thirty-three"):
        count = {"one": 1, "eight": 8, "thirty-three": 33}[case]
        for index in range(count):
            paths.append(folder / f"f{index:02d}.png")
            Image.fromarray(np.roll(rgb, index, axis=1)).save(paths[-1])
        return paths, (48, 80)
    if case == "one-pixel":
        for name in ("a.png", "b.png"):
            Image.fromarray(rgb[:1, :1]).save(folder / name)
            paths.append(folder / name)
        return paths, (1, 1)
    if case == "modes":  # grey, RGBA, palette and 16-bit PNGs in one stack
        Image.fromarray(rgb[..., 0]).save(folder / "grey.png")
        Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])).save(folder / "rgba.png")
        Image.fromarray(rgb).convert("P").save(folder / "palette.png")
        import cv2

        cv2.imwrite(str(folder / "sixteen.png"), (rgb.astype(np.uint16) * 257)[..., ::-1])
        return [folder / n for n in ("grey.png", "rgba.png", "palette.png", "sixteen.png")], (48, 80)
    if case == "exif-rotated":  # stored 80x48, EXIF orientation 6: shown (and fused) as 48x80
        for name in ("a.jpg", "b.jpg"):
            image = Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1)))
            exif = Image.Exif()
            exif[0x0112] = 6
            image.save(folder / name, exif=exif)
            paths.append(folder / name)
        return paths, (48, 80)
    if case == "unicode path":
        where = folder / "mes photos été" / "pile 1 ✓"
        where.mkdir(parents=True)
        for name in ("près.png", "loin.png"):
            Image.fromarray(rgb).save(where / name)
            paths.append(where / name)
        return paths, (48, 80)
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["one", "eight", "thirty-three", "one-pixel", "modes", "exif-rotated",
                                  "unicode path"])
@pytest.mark.parametrize("mode", ["latent", "hybrid"])
def test_valid_unusual_inputs_are_fused(tiny_model, tmp_path, case, mode):
    from vaeedof.images import load_image

    inputs, (height, width) = _variant_inputs(tmp_path, case)
    before = {p: p.read_bytes() for p in inputs}
    out = tmp_path / "résultat fusionné.png"
    code = main(["fuse", *map(str, inputs), "-o", str(out), "--checkpoint",
                 str(tiny_model / "m.safetensors"), "--resources", str(tiny_model / "resources"),
                 "--tile", "64", "--no-vae-check", "--mode", mode])
    assert code == 0
    assert load_image(out).pixels.shape == (3, height, width)
    assert all(p.read_bytes() == data for p, data in before.items())  # inputs untouched


def test_tampered_download_in_resources_is_detected_at_the_next_run(tmp_path):
    payload = b"verified weights" * 100
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "asset.bin").write_bytes(payload)
    asset = registry.RemoteAsset(name="test/asset", filename="asset.bin", kind="vae",
                                 url="http://127.0.0.1:9/asset.bin",
                                 sha256=hashlib.sha256(payload).hexdigest())
    cached = fetch.resolve(asset, tmp_path / "res", mirrors=[str(mirror)])
    cached.write_bytes(b"tampered")
    # Next run: the copy fails verification and is replaced from the mirror...
    assert fetch.resolve(asset, tmp_path / "res", mirrors=[str(mirror)]).read_bytes() == payload
    # ...and with no trusted source left, it is refused, never used.
    cached.write_bytes(b"tampered again")
    with pytest.raises(VaeedofError):
        fetch.resolve(asset, tmp_path / "res", mirrors=[], allow_download=False)
    assert not cached.exists()


@pytest.mark.parametrize("explicit", [False, True])
def test_fuse_default_mode_falls_back_for_a_checkpoint_without_the_hybrid_mix(
        tiny_model, tmp_path, monkeypatch, capsys, explicit):
    """params' fusion.output is hybrid: a checkpoint trained without the hybrid loss still fuses
    (latent mode, with a warning) unless --mode hybrid was asked for explicitly."""
    info_path = tmp_path / "m.json"
    info = json.loads((tiny_model / "m.json").read_text()) | {"hybrid_trained": False}
    info_path.write_text(json.dumps(info))
    (tmp_path / "m.safetensors").write_bytes((tiny_model / "m.safetensors").read_bytes())
    params = tiny_params() | {"fusion": {"output": "hybrid", "hybrid_radius": 2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    image = tmp_path / "a.png"  # sides not multiples of 64: padded, as real photographs are
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8)).save(image)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.png"
    code = main(["fuse", str(image), str(image), "-o", str(out), "--checkpoint", "m.safetensors",
                 "--resources", str(tiny_model / "resources"), "--tile", "64", "--no-vae-check",
                 *(["--mode", "hybrid"] if explicit else [])])
    err = capsys.readouterr().err
    if explicit:
        assert code == 2 and "trained without the hybrid loss" in err and not out.exists()
    else:
        assert code == 0 and "using the latent output mode" in err and out.exists()
        latent = tmp_path / "latent.png"
        assert main(["fuse", str(image), str(image), "-o", str(latent), "--checkpoint", "m.safetensors",
                     "--resources", str(tiny_model / "resources"), "--tile", "64", "--no-vae-check",
                     "--mode", "latent"]) == 0
        assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(latent)))
