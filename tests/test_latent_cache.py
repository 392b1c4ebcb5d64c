"""The sharded VAE latent cache: format, posterior sampling, resume after kill, ranks, the CLI.

Real files and a real (tiny, randomly initialised) diffusers AutoencoderKL throughout.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from trainers.data.base import CorruptDataError, flip_decision
from trainers.data.latent_cache import LatentDataset, posterior_noise, read_latent_meta, verify_latent_cache
from trainers.data.latent_encode import CacheMismatch, encode_latent_cache
from trainers.data.registry import build_dataset, dataset_info
from trainers.data.synthetic_folder import write_synthetic_image_folder
from trainers.data.vae import VaeUnavailable, load_vae, load_vae_for_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": ROOT}
FAST = dict(kind="imagenet_folder", image_size=32, tiny_vae=True, loader_workers=0, progress=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("img") / "shapes")
    paths = write_synthetic_image_folder(root, classes=3, per_class=7, size=40, seed=1)
    assert len(paths) == 21 and paths == write_synthetic_image_folder(root, classes=3, per_class=7, size=40, seed=1)
    return root


@pytest.fixture(scope="module")
def cache(images, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cache") / "lat")
    result = encode_latent_cache(out, src=images, shard_size=8, batch_size=3, **FAST)
    assert result["encoded"] == [0, 1, 2] and result["skipped"] == [] and result["images"] == 21
    assert result["manifest"] == os.path.join(out, "manifest.json")
    return out


def test_manifest_and_checksums(cache, images):
    meta = verify_latent_cache(cache)
    assert meta == read_latent_meta(cache)
    assert meta["num_items"] == 21 and meta["num_classes"] == 3 and meta["classes"] == ["class_00", "class_01", "class_02"]
    assert meta["latent_shape"] == [4, 8, 8] and meta["scale"] == 0.18215 and meta["flip_both"] is True
    assert meta["source"] == {**meta["source"], "dataset": "imagenet_folder", "root": os.path.abspath(images)}
    assert [(s["start"], s["stop"], s["count"]) for s in meta["shards"]] == [(0, 8, 8), (8, 16, 8), (16, 21, 5)]
    assert not [f for f in os.listdir(cache) if ".tmp-" in f]
    for s in meta["shards"]:
        mean = np.load(os.path.join(cache, s["files"]["mean"]["name"]), mmap_mode="r")
        assert isinstance(mean, np.memmap) and mean.shape == (s["count"], 2, 4, 8, 8) and mean.dtype == np.float32
    assert dataset_info("latents", root=cache) == (4, 3)
    # a flipped bit is caught by verify
    path = os.path.join(cache, meta["shards"][1]["files"]["std"]["name"])
    with open(path, "rb") as fh:
        raw = bytearray(fh.read())
    raw[-1] ^= 1
    with open(path, "wb") as fh:
        fh.write(raw)
    try:
        with pytest.raises(CorruptDataError, match="shard 1"):
            verify_latent_cache(cache)
    finally:
        raw[-1] ^= 1
        with open(path, "wb") as fh:
            fh.write(raw)


def test_mean_std_are_the_vae_posterior(cache, images):
    pixels = build_dataset("imagenet_folder", root=images, image_size=32, random_flip=False)
    x = torch.stack([pixels[i][0] for i in range(len(pixels))])
    vae = load_vae_for_cache(read_latent_meta(cache))  # the tiny VAE again, from the manifest
    with torch.no_grad():
        dist = vae.encode(torch.cat([x, x.flip(-1)])).latent_dist
    lat = build_dataset("latents", root=cache)
    assert isinstance(lat, LatentDataset) and len(lat) == 21
    for i in (0, 9, 20):
        for f in (0, 1):
            mean, std = lat.posterior_of(i, f)
            assert np.allclose(mean, dist.mean[i + 21 * f].numpy(), atol=1e-5)
            assert np.allclose(std, dist.std[i + 21 * f].numpy(), atol=1e-5)
        assert lat.label_of(i) == int(pixels[i][1]) == i // 7


def test_items_sample_the_posterior_reproducibly(cache):
    a = LatentDataset(cache, seed=3)
    b = LatentDataset(cache, seed=3)  # a resumed run opens the cache afresh
    mean_ds = LatentDataset(cache, seed=3, posterior="mean")
    for ds in (a, b, mean_ds):
        ds.set_epoch(2)
    draws = []
    for i in range(len(a)):
        z, y = a[i]
        assert z.dtype == torch.float32 and z.shape == (4, 8, 8) and y.dtype == torch.int64
        assert torch.equal(z, b[i][0]) and torch.equal(z, a[i][0])
        mean, std = a.posterior_of(i, int(flip_decision(3, 2, i)))
        eps = posterior_noise(3, 2, i, mean.shape)
        assert torch.allclose(z, torch.from_numpy((mean + std * eps) * 0.18215), atol=1e-7)
        assert torch.allclose(mean_ds[i][0], torch.from_numpy(mean * 0.18215))
        draws.append((z.numpy() / 0.18215 - mean) / std)
    draws = np.stack(draws)
    assert abs(draws.mean()) < 0.05 and abs(draws.std() - 1) < 0.05  # eps ~ N(0, 1)
    assert len({flip_decision(3, 2, i) for i in range(len(a))}) == 2  # both copies in use
    a.set_epoch(3)
    assert all(not torch.equal(a[i][0], b[i][0]) for i in range(len(a)))  # fresh noise every epoch
    # DataLoader workers reopen the memory maps themselves
    loader = torch.utils.data.DataLoader(b, batch_size=7, num_workers=1)
    assert torch.equal(next(iter(loader))[0], torch.stack([b[i][0] for i in range(7)]))


def test_rerun_is_a_no_op_and_other_settings_are_refused(cache, images):
    before = {f: os.path.getmtime(os.path.join(cache, f)) for f in os.listdir(cache)}
    again = encode_latent_cache(cache, src=images, shard_size=8, batch_size=5, **FAST)
    assert again["encoded"] == [] and again["skipped"] == [0, 1, 2]
    assert before == {f: os.path.getmtime(os.path.join(cache, f)) for f in os.listdir(cache)}
    for change in (dict(scale=1.0), dict(dtype="float16"), dict(flip_both=False), dict(vae_seed=1)):
        with pytest.raises(CacheMismatch, match="other settings"):
            encode_latent_cache(cache, src=images, shard_size=8, batch_size=5, **{**FAST, **change})
    with pytest.raises(CacheMismatch, match="image_size"):
        encode_latent_cache(cache, src=images, shard_size=8, **{**FAST, "image_size": 16})


def _run(args, **kw):
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_two_ranks_build_the_same_cache(cache, images, tmp_path):
    out = str(tmp_path / "two")
    rank1 = _run(["-m", "trainers.data.latent_encode", "--src", images, "--out", out, "--image-size", "32",
                  "--tiny-vae", "--shard-size", "8", "--batch-size", "3", "--loader-workers", "0", "--threads", "1",
                  "--no-progress", "--rank", "1", "--world-size", "2"])
    r0 = encode_latent_cache(out, src=images, shard_size=8, batch_size=3, rank=0, world_size=2, **FAST)
    stdout, stderr = rank1.communicate(timeout=120)
    assert rank1.returncode == 0, stderr
    assert r0["encoded"] == [0, 2] and "rank 1/2: encoded 1 shards" in stdout
    assert verify_latent_cache(out)["shards"] == read_latent_meta(cache)["shards"]  # byte-identical shards


def test_kill_mid_way_then_resume(images, tmp_path):
    from platform.prepare import main
    src = str(tmp_path / "more")
    write_synthetic_image_folder(src, classes=4, per_class=24, size=32, seed=2)
    out = str(tmp_path / "killed")
    args = ["latents", "--src", src, "--out", out, "--image-size", "32", "--tiny-vae", "--local", "--shard-size", "8",
            "--batch-size", "8", "--loader-workers", "0", "--threads", "1", "--no-progress"]
    proc = _run(["-m", "platform.prepare", *args])
    first = os.path.join(out, "done-00000.json")
    deadline = time.monotonic() + 120
    while not os.path.exists(first) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(f for f in os.listdir(out) if f.startswith("done-"))
    assert 1 <= len(done) < 12 and not os.path.exists(os.path.join(out, "manifest.json"))
    with pytest.raises(CorruptDataError, match="incomplete"):
        build_dataset("latents", root=out)
    assert main(args) == 0
    meta = verify_latent_cache(out)
    assert meta["num_items"] == 96 and len(meta["shards"]) == 12
    for f in done:  # finished shards were kept, not re-encoded
        with open(os.path.join(out, f)) as fh:
            assert json.load(fh) == meta["shards"][int(f[5:10])]


@pytest.mark.parametrize("case, message", [
    ("missing", "is not a directory"), ("empty", "no images"), ("vae", "cannot load the VAE"), ("mismatch", "other settings"),
])
def test_bad_input_is_one_line_and_exit_2(case, message, cache, images, tmp_path, capsys, monkeypatch):
    from platform.prepare import main
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "empty" / "class_a").mkdir(parents=True)
    src = {"missing": str(tmp_path / "nowhere"), "empty": str(tmp_path / "empty")}.get(case, images)
    out = cache if case == "mismatch" else str(tmp_path / "out")
    vae = ["--vae", str(tmp_path / "no-such-vae")] if case == "vae" else ["--tiny-vae"]
    code = main(["latents", "--src", src, "--out", out, "--image-size", "16", "--local", "--no-progress", *vae])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    if case != "mismatch":
        assert not os.path.exists(os.path.join(out, "manifest.json"))


def test_load_vae_local_folder_and_clear_offline_error(tmp_path):
    tiny = load_vae(offline_tiny=True)
    tiny.save_pretrained(tmp_path / "vae")
    vae = load_vae(str(tmp_path / "vae"))
    assert not any(p.requires_grad for p in vae.parameters())
    assert torch.equal(next(vae.parameters()), next(tiny.parameters()))
    with pytest.raises(VaeUnavailable, match="offline_tiny=True"):
        load_vae(str(tmp_path / "missing"))


def test_help_does_not_import_torch():
    code = "import sys; from platform.prepare import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.stdout.strip() == "False", out.stderr
