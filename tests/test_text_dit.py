"""The text-conditional DiT path (docs/text_conditional.md): the model's parameters and its exact
reduction to the unconditional DiT, caption dropout and classifier-free guidance with the empty
caption, the captioned Fashion-MNIST and MS-COCO readers, and a run that trains through the real
DeepSpeed engine with the real (offline) MiniLM encoder, samples with CFG and reports an FID."""
import json
import math
import os

import numpy as np
import pytest
import torch

from trainers.data.base import DatasetUnavailable
from trainers.data.captioned import FASHION_CLASSES, caption_table, fashion_table
from trainers.data.registry import build_dataset
from trainers.models import build_model
from trainers.models.embeddings import LabelEmbedder
from trainers.text.bank import MANIFEST, CaptionBank, bank_dir
from trainers.text.conditioning import TextConditioner, caption_reference

D, DEPTH, CTX = 128, 4, 384  # DiT-T: depth 4, hidden 128, 4 heads; MiniLM tokens are 384-d


def _text_dit(**kw):
    return build_model("DiT-T/2-text", input_size=8, in_channels=1, num_classes=1, text_encoder="minilm", **kw)


def _randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name != "pos_embed":
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_parameter_count_is_the_formula_of_its_blocks():
    model = _text_dit()
    p, c_in, c_out, tokens = 2, 1, 2, (8 // 2) ** 2
    self_attn = 3 * D * D + 3 * D + D * D + D         # qkv + proj
    cross_attn = D * D + D + 2 * D * D + 2 * D + D * D + D  # q, kv (text tokens), proj
    mlp = D * 4 * D + 4 * D + 4 * D * D + D
    ada_ln = D * 6 * D + 6 * D                          # from the timestep embedding only
    embedders = (c_in * p * p * D + D) + (256 * D + D + D * D + D) + tokens * D + (CTX * D + D)
    final = D * 2 * D + 2 * D + D * p * p * c_out + p * p * c_out
    assert sum(x.numel() for x in model.parameters()) == embedders + DEPTH * (
        self_attn + cross_attn + mlp + ada_ln) + final
    assert model.y_embedder is None and model.blocks[0].adaLN_modulation[-1].in_features == D
    assert all(torch.count_nonzero(b.cross_attn.proj.weight) == 0 for b in model.blocks)  # zero-initialised


@pytest.mark.parametrize("routing", [None, "dtr"])
def test_zeroed_cross_attention_computes_the_unconditional_dit_exactly(routing):
    dit = build_model("DiT-T/2", input_size=8, in_channels=1, num_classes=1, routing=routing)
    _randomise(dit, 0)
    text = _text_dit(routing=routing)
    _randomise(text, 1)
    missing, unexpected = text.load_state_dict(dit.state_dict(), strict=False)
    assert not unexpected and {k.split(".")[0] if k.startswith("context") else k.split(".")[2] for k in missing} \
        == {"context_embedder", "cross_attn"}
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(3, 1, 8, 8, generator=g), torch.tensor([0, 500, 999])
    ctx, mask = torch.randn(3, 5, CTX, generator=g), torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    live = text(x, t, ctx, mask.bool())
    assert not torch.allclose(live, dit(x, t))  # with its projection the caption does change the output
    padded = ctx.clone()
    padded[~mask.bool()] = 7.0
    assert torch.equal(text(x, t, padded, mask.bool()), live)  # padded text tokens are never attended to
    with torch.no_grad():
        for block in text.blocks:
            block.cross_attn.proj.weight.zero_()
            block.cross_attn.proj.bias.zero_()
    assert torch.equal(text(x, t, ctx, mask.bool()), dit(x, t))


def _hand_bank(tmp_path, rows=5, length=4):
    g = torch.Generator().manual_seed(3)
    path = tmp_path / "bank"
    path.mkdir()
    np.save(path / "tokens.npy", torch.randn(rows, length, CTX, generator=g).numpy().astype(np.float16))
    np.save(path / "mask.npy", np.arange(length)[None] < np.array([2, 2, 3, 4, 1])[:, None])
    (path / "captions.json").write_text(json.dumps(["", "a", "b", "c", "d"]))
    (path / MANIFEST).write_text(json.dumps({"count": rows, "encoder": "minilm"}))
    return CaptionBank(str(path))


def test_caption_dropout_and_cfg_use_the_empty_caption(tmp_path):
    from trainers.diffusion.sampling import guided_output
    bank = _hand_bank(tmp_path)
    model = _text_dit()
    _randomise(model, 4)
    order = np.array([3, 1, 4])  # held-out id i -> bank row order[i]; id 3 (= num_classes) is the null
    cond = TextConditioner(model.eval(), bank, order)
    assert cond.num_classes == 3 and cond.in_channels == 1 and cond.rows(torch.tensor([0, 2, 3])).tolist() == [3, 4, 0]
    x, t, y = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(5)), torch.tensor([10, 20, 30]), \
        torch.tensor([2, 0, 1])
    tok, mask = bank.lookup(torch.tensor([4, 3, 1]))
    null_tok, null_mask = bank.lookup(torch.zeros(3, dtype=torch.long))
    out_c, out_u = model(x, t, tok, mask), model(x, t, null_tok, null_mask)
    guided = guided_output(cond, x, t, y, cfg_scale=1.5)
    expected = torch.cat([out_u[:, :1] + 1.5 * (out_c[:, :1] - out_u[:, :1]), out_c[:, 1:]], dim=1)
    assert torch.allclose(guided, expected, atol=1e-5, rtol=0)
    assert torch.equal(cond(x, t, y, force_drop_ids=torch.ones(3)), out_u)  # a dropped caption is ""
    # training: caption dropout draws exactly as DiT's label dropout (same RNG, p = 0.1)
    labels, embedder = torch.arange(400) % 3, LabelEmbedder(3, 8, 0.1).train()
    torch.manual_seed(7)
    dropped_labels = embedder.token_drop(labels) == 3
    model.train()
    torch.manual_seed(7)
    dropped_captions = cond.drop(labels) == cond.num_classes
    assert torch.equal(dropped_labels, dropped_captions) and 20 < int(dropped_captions.sum()) < 60


def test_fashion_captions_are_derived_from_the_image_and_follow_flips():
    img = np.zeros((2, 28, 28), dtype=np.uint8)
    img[0, 8:20, 2:20] = 100      # footwear: dark (100 < 144), small (216/784 < 0.36), heel (top) on the right
    img[0, 4:8, 14:20] = 100
    img[1, 2:26, 4:24] = 200      # a bright, large (480/784 > 0.54) t-shirt
    table = fashion_table(img, np.array([7, 0]))
    caps = [[table.captions[r] for r in table.rows[k * 2 + j]] for k in range(3) for j in range(2)]
    assert caps[0] == ["a dark sneaker"] * 2 and caps[1] == ["a bright t-shirt"] * 2
    assert caps[2] == ["a small sneaker, facing left", "a small sneaker, facing right"]  # toe away from the heel
    assert caps[5] == ["a photo of a large, bright t-shirt"] * 2 and table.captions[0] == ""
    full = caption_table("fashion_mnist_captions", None, "train")
    assert len(full) == 3 * 60_000 and full.classes[123] == full.classes[60_123]
    ds = build_dataset("fashion_mnist_captions", image_size=32, split="train", random_flip=True, seed=0)
    plain = build_dataset("fashion_mnist", image_size=32, split="train", random_flip=False)
    for i in (5, 60_005, 120_005):
        x, y = ds[i]
        flipped = ds.is_flipped(i)
        assert y.dtype == torch.int64 and y.ndim == 0 and int(y) == full.rows[i, int(flipped)]
        assert torch.equal(x, plain[5][0].flip(-1) if flipped else plain[5][0])
        assert FASHION_CLASSES[int(plain[5][1])] in full.captions[int(y)]


def _fake_coco(root):
    from PIL import Image
    for split, ids in (("train2014", (9, 4, 7)), ("val2014", (1,))):
        os.makedirs(root / split)
        for i in ids:
            Image.new("RGB", (24, 16), (10 * i, 100, 200)).save(root / split / f"COCO_{split}_{i:012d}.jpg")
    os.makedirs(root / "annotations")
    train = {"images": [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg"} for i in (9, 4, 7)],
             "annotations": [{"id": 30, "image_id": 9, "caption": "a  red bus "}, {"id": 12, "image_id": 4,
                             "caption": "two cats"}, {"id": 5, "image_id": 4, "caption": "a cat pair"},
                             {"id": 40, "image_id": 9, "caption": "a bus"}]}  # image 7 has no caption
    val = {"images": [{"id": 1, "file_name": "COCO_val2014_000000000001.jpg"}],
           "annotations": [{"id": 2, "image_id": 1, "caption": "a dog"}]}
    (root / "annotations" / "captions_train2014.json").write_text(json.dumps(train))
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps(val))


def test_coco_reader_on_a_tiny_fake_coco(tmp_path):
    root = tmp_path / "coco"
    _fake_coco(root)
    ds = build_dataset("coco", root=str(root), image_size=8, split="train", random_flip=False)
    captions = ds.table.captions
    # images sorted by id (4, 9), captions by annotation id; caption-major: every image's first, then second
    assert [captions[int(ds[i][1])] for i in range(len(ds))] == ["a cat pair", "a red bus", "two cats", "a bus"]
    assert ds.table.images.tolist() == [0, 1, 0, 1] and captions[0] == ""
    x, _ = ds[1]
    assert x.shape == (3, 8, 8) and abs(float(x[0, 0, 0]) - (90 / 127.5 - 1)) < 0.05  # image 9's red = 90
    assert [os.path.basename(p) for p, _ in ds.samples][:2] == ["COCO_train2014_000000000004.jpg",
                                                                 "COCO_train2014_000000000009.jpg"]
    assert caption_table("coco_captions", str(root), "val").captions == ("", "a dog")
    assert caption_reference("coco_captions", str(root)) == ("image_folder", str(root / "val2014"), "train")
    assert bank_dir("coco_captions", str(root), "clip-l14") == str(root / "text_cache" / "clip-l14-L77")
    os.remove(root / "train2014" / "COCO_train2014_000000000009.jpg")
    with pytest.raises(DatasetUnavailable, match="1 of 2 MS-COCO images"):
        build_dataset("coco", root=str(root / ".." / "coco"), image_size=8, split="train")


def test_text_run_trains_samples_with_cfg_and_scores(train_env):
    from trainers.config import RunConfig
    from trainers.diffusion.gaussian import GaussianDiffusion
    from trainers.evaluation.evaluate import generate_samples
    from trainers.models.from_config import model_for
    from trainers.presets import preset_config
    from trainers.training.loop import train_model
    cfg = preset_config("smoke", run_name="text", run_dir=str(train_env / "runs" / "text"), model="DiT-T/4-text",
                        dataset="fashion_mnist_captions", routing="dtr", steps=4, global_batch=8, micro_batch=8,
                        ckpt_every=0, final_eval_samples=24, sample_steps=4, cfg_scale=1.5, feature_set="domain")
    result = train_model(cfg, mlflow_enabled=False, threads=1)
    assert math.isfinite(result["fid"]) and result["fid"] > 0 and result["num_samples"] == 24
    assert "cfg=1.5" in result["fid_protocol"] and result["reference"] == "fashion_mnist/train"
    assert result["feature_set"] == "domain-fashion_mnist" and 0 <= result["label_accuracy"] <= 1
    assert result["clip_score"] is None and "minilm is not CLIP" in result["clip_score_note"]
    with open(os.path.join(cfg.run_dir, "metrics.json")) as fh:
        assert RunConfig.from_dict(json.load(fh)["config"]) == cfg
    # sample i is conditioned on held-out caption i and is a function of (seed, i), whatever the batch
    model = model_for(cfg).eval()
    _randomise(model, 8)
    diffusion = GaussianDiffusion(cfg.schedule, cfg.num_timesteps, learn_sigma=True)
    all4, labels = generate_samples(model, diffusion, cfg, [0, 1, 2, 3])
    two, labels2 = generate_samples(model, diffusion, cfg, [3, 1])
    assert labels.tolist() == [0, 1, 2, 3] and labels2.tolist() == [3, 1]
    assert torch.allclose(two, all4[[3, 1]], atol=1e-5, rtol=0)


def test_config_budgets_and_paper_values_know_the_text_setting():
    from reports.paper_values import paper_reference, setting_matches, source_preference
    from search_spaces import get_space
    from search_spaces.budgets import get_budget
    from search_spaces.resolve import baseline_configs
    from trainers.config import RunConfig
    for bad, why in ((dict(model="DiT-B/2-text"), "captioned data"), (dict(dataset="coco_captions"), "text model"),
                     (dict(model="DiT-T/2-text", dataset="coco_captions", multi_expert_n=2), "multi-expert"),
                     (dict(model="DiT-T/2-text", dataset="coco_captions", text_encoder="t5"), "text_encoder")):
        with pytest.raises(ValueError, match=why):
            RunConfig(**bad)
    coco = baseline_configs(get_space("text_routing"), get_budget("coco"), {"data_root": "/data/latents/coco256"})
    dtr = coco["DTR"]
    assert (dtr.model, dtr.text_encoder, dtr.steps, dtr.global_batch, dtr.cfg_scale, dtr.sampler, dtr.sample_steps,
            dtr.schedule, dtr.final_eval_samples) == ("DiT-B/2-text", "clip-l14", 400_000, 256, 1.5, "ddpm", 250,
                                                      "cosine", 50_000)
    import polars as pl
    order = source_preference(pl.DataFrame([{"routing": "dtr", "alpha": 4.0, "model": dtr.model}]))
    for label, fid in (("vanilla", 7.70), ("R-TR", 10.49), ("DTR", 7.04)):
        row = coco[label].to_dict()
        source, values = paper_reference(row, row, order)
        assert source.key == "dtr-coco" and values["fid"] == fid and setting_matches(source, {**row, "feature_set":
                                                                                                "inception"})
