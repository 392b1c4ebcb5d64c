"""The training data set of a run as an MLflow dataset input (``mlflow.data``): its name, where it
lives and a digest of its content, so MLflow's run page and dataset filter say which data trained
a model, and two runs with the same digest saw the same bytes.

Digests: Fashion-MNIST / MNIST: sha256 over the sha256 of the train split's two idx files, found
where the trainer looks for them; a latent cache: sha256 over the shard checksums its
manifest records (no shard is re-read); an image folder: sha256 over every image's relative path
and size; scikit-learn's digits: sha256 of the arrays.  The full hashes are in the dataset's
profile, the digest MLflow shows is their first 16 hex digits.
"""
from __future__ import annotations

import hashlib
import json
import os

from trainers.config import RunConfig

DIGEST_CHARS = 16


def _sha(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\n")
    return h.hexdigest()


def _idx_files(name: str, root: str | None) -> tuple[str, list[str]]:
    """(the folder, its idx files) of Fashion-MNIST / MNIST where ``load_idx_dataset`` finds them."""
    from trainers.data.pixel_datasets import _TORCHVISION_CLASS, IDX_FILES, SYSTEM_DIRS
    downloads = os.environ.get("DTR_DATA_DIR", os.path.expanduser("~/.cache/dtr_platform/data"))
    folders = ([root, os.path.join(root, _TORCHVISION_CLASS[name], "raw")] if root
               else [SYSTEM_DIRS[name], os.path.join(downloads, _TORCHVISION_CLASS[name], "raw")])
    for folder in folders:
        found = []
        for stem in IDX_FILES["train"]:
            hits = [os.path.join(folder, stem + ext) for ext in (".gz", "") if os.path.isfile(os.path.join(folder, stem + ext))]
            found += hits[:1]
        if len(found) == 2:
            return folder, found
    raise FileNotFoundError(f"no {name} idx files in {', '.join(folders)}")


def describe_dataset(cfg: RunConfig) -> dict:
    """``{"name", "source", "digest", "profile"}`` of the run's training data (raises when the data
    cannot be found: the caller logs no input then)."""
    from trainers.data.registry import _canonical
    from trainers.files import file_sha256
    key = _canonical(cfg.dataset)
    root = cfg.data_root or None
    if key in ("fashion_mnist", "mnist"):
        folder, files = _idx_files(key, root)
        hashes = {os.path.basename(f): file_sha256(f) for f in files}
        full = _sha(f"{n} {h}" for n, h in sorted(hashes.items()))
        profile = {"files_sha256": hashes, "split": "train"}
    elif key == "latents":
        from trainers.data.latent_cache import read_latent_meta
        folder = os.path.abspath(root)
        meta = read_latent_meta(folder)
        sums = sorted(entry["sha256"] for shard in meta["shards"] for entry in shard["files"].values())
        full = _sha(sums)
        profile = {"num_items": meta["num_items"], "num_shards": meta["num_shards"], "vae": meta["vae"].get("name"),
                   "latent_shape": meta["latent_shape"], "source": meta.get("source", {}).get("dataset")}
    elif key in ("image_folder", "imagenet_folder"):
        folder = os.path.abspath(root)
        entries = sorted((os.path.relpath(os.path.join(d, f), folder), os.path.getsize(os.path.join(d, f)))
                         for d, _, names in os.walk(folder) for f in names)
        full = _sha(f"{p}\t{n}" for p, n in entries)
        profile = {"files": len(entries)}
    else:  # digits: arrays a package ships
        from trainers.data.pixel_datasets import digits_arrays
        images, labels = digits_arrays("train")
        folder, full = "sklearn.datasets.load_digits", _sha([images.tobytes(), labels.tobytes()])
        profile = {"num_items": int(len(labels))}
    return {"name": key, "source": folder, "digest": full[:DIGEST_CHARS],
            "profile": {"sha256": full, "image_size": cfg.image_size, **profile}}


def dataset_input(cfg: RunConfig):
    """The run's ``mlflow.entities.DatasetInput`` (context ``training``): an ``mlflow.data``
    MetaDataset over a local source, with the profile of ``describe_dataset``."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.entities import Dataset, DatasetInput, InputTag

    info = describe_dataset(cfg)
    fields = MetaDataset(LocalArtifactDatasetSource(info["source"]), name=info["name"], digest=info["digest"]).to_dict()
    entity = Dataset(name=fields["name"], digest=fields["digest"], source_type=fields["source_type"],
                     source=fields["source"], profile=json.dumps(info["profile"], sort_keys=True))
    return DatasetInput(dataset=entity, tags=[InputTag(key="mlflow.data.context", value="training")])
