"""Published numbers beside a sweep's configurations (docs/published_results.md).

Each paper table has a setting (model, data, Inception FID-50K, ...).  A configuration gets
the values of the table that reports its method and whose setting is closest to its own;
when the settings differ — every laptop- or smoke-scale sweep — the values are still shown,
as a reference for the *ordering* of methods, and the note says what differs.
"""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class PaperSource:
    key: str
    title: str
    model: str
    dataset: str
    steps: int | None
    cfg_scale: float | None
    entries: tuple  # ((method dict, values dict), ...)
    feature_set: str = "inception"

    def setting_text(self) -> str:
        bits = [self.model, self.dataset]
        if self.steps:
            bits.append(f"{self.steps // 1000}K iters")
        if self.cfg_scale:
            bits.append(f"cfg {self.cfg_scale}")
        bits.append("FID-50K (Inception)")
        return ", ".join(bits)


def _vanilla(**values):
    return ({"routing": "none", "weighting": "vanilla"}, values)


def _dtr(alpha=4.0, weighting="vanilla", **values):
    return ({"routing": "dtr", "weighting": weighting, "beta": 0.8, "alpha": alpha}, values)


PAPER_SOURCES = (
    PaperSource("dtr-t1", "DTR paper, Tables 1–2", "DiT-L/2", "ImageNet-256", 400_000, 1.5, (
        _vanilla(fid=12.59, is_mean=134.60, precision=0.73, recall=0.49),
        ({"routing": "random", "weighting": "vanilla", "beta": 0.8},
         dict(fid=16.18, is_mean=105.88, precision=0.70, recall=0.51)),
        _dtr(fid=8.90, is_mean=156.48, precision=0.77, recall=0.51),
        ({"routing": "none", "weighting": "min_snr"}, dict(fid=9.58, is_mean=179.98, precision=0.78, recall=0.47)),
        _dtr(weighting="min_snr", fid=8.24, is_mean=186.02, precision=0.79, recall=0.50),
        ({"routing": "none", "weighting": "ant_uw"}, dict(fid=5.85, is_mean=206.68, precision=0.84, recall=0.46)),
        _dtr(weighting="ant_uw", fid=4.61, is_mean=208.76, precision=0.84, recall=0.48))),
    PaperSource("dtr-t4-imagenet", "DTR paper, Table 4 (alpha ablation)", "DiT-L/2", "ImageNet-256", 400_000, 1.5, (
        _vanilla(fid=12.59),
        *(_dtr(alpha=a, fid=f) for a, f in zip((0.5, 1, 2, 3, 4, 5), (11.55, 10.31, 9.39, 8.89, 8.90, 9.66))))),
    PaperSource("dtr-t4-ffhq", "DTR paper, Table 4 (alpha ablation)", "DiT-B/2", "FFHQ-256", None, None, (
        _vanilla(fid=10.99),
        *(_dtr(alpha=a, fid=f) for a, f in zip((0.5, 1, 2, 3, 4, 5), (7.78, 7.78, 7.64, 7.77, 7.32, 7.40))))),
    PaperSource("dtr-appf", "DTR paper, App. F (clustered variants)", "DiT-B/2", "FFHQ-256", None, None, (
        _vanilla(fid=10.99),
        ({"routing": "ercdt", "weighting": "vanilla"}, dict(fid=10.13)),
        ({"routing": "cdtr", "weighting": "vanilla", "beta": 0.8, "alpha": 4.0}, dict(fid=9.61)),
        _dtr(fid=7.32))),
    PaperSource("dtr-appd", "DTR paper, App. D (multi-expert; experts are DiT-B/2)", "DiT-L/2", "ImageNet-256",
                400_000, 1.5, (
        _vanilla(fid=12.59), _dtr(fid=8.90),
        ({"routing": "none", "weighting": "vanilla", "multi_expert_n": 4}, dict(fid=9.48)))),
    PaperSource("switch-s", "Switch-DiT paper (S)", "DiT-S/2", "ImageNet-256", None, 1.5, (
        _vanilla(fid=44.28), _dtr(fid=37.43),
        ({"routing": "learned", "weighting": "vanilla"}, dict(fid=33.99)))),
    PaperSource("switch-xl", "Switch-DiT paper (XL)", "DiT-XL/2", "ImageNet-256", None, 1.5, (
        _vanilla(fid=9.40), _dtr(fid=10.85),
        ({"routing": "learned", "weighting": "vanilla"}, dict(fid=8.76)))),
    # text-to-image (App. C): a text-conditional DiT-B/2 (cross-attention to CLIP text tokens), FID-50K
    PaperSource("dtr-coco", "DTR paper, Table 1 (MS-COCO)", "DiT-B/2-text", "MS-COCO-256", 400_000, 1.5, (
        _vanilla(fid=7.70),
        ({"routing": "random", "weighting": "vanilla", "beta": 0.8}, dict(fid=10.49)),
        _dtr(fid=7.04))),
)
PAPER_BY_KEY = {s.key: s for s in PAPER_SOURCES}


def dataset_setting(dataset: str | None, image_size: int | None, data_root: str | None = None) -> str:
    """Data set + resolution in the papers' naming (``ImageNet-256``; latents are 8x downsampled)."""
    dataset, root, size = dataset or "?", (data_root or "").lower(), image_size or 0
    if dataset == "latents":
        name = "FFHQ" if "ffhq" in root else "MS-COCO" if "coco" in root else "ImageNet"
        return f"{name}-{size * 8}"
    if dataset == "coco_captions":
        return f"MS-COCO-{size}"
    if dataset == "imagenet_folder":
        return f"ImageNet-{size}"
    if dataset == "image_folder" and "ffhq" in root:
        return f"FFHQ-{size}"
    return f"{dataset}-{size}"


def _matches(method: dict, params: dict) -> bool:
    if params.get("multi_expert_n") not in (None, 1) and "multi_expert_n" not in method:
        return False  # a multi-expert ensemble is not the single model of the same routing
    for key, want in method.items():
        have = params.get(key)
        if isinstance(want, float):
            if have is None or abs(float(have) - want) > 1e-6:
                return False
        elif have != want:
            return False
    return True


def _setting_score(source: PaperSource, row: dict) -> int:
    data = dataset_setting(row.get("dataset"), row.get("image_size"), row.get("data_root"))
    return 2 * (row.get("model") == source.model) + 2 * (data == source.dataset)


def setting_matches(source: PaperSource, row: dict) -> bool:
    """Same model, data set and feature set as the paper table (steps/cfg may still differ)."""
    return _setting_score(source, row) == 4 and (row.get("feature_set") or "").startswith(source.feature_set)


def source_preference(trials: pl.DataFrame) -> list[str]:
    """Paper tables in the order a sweep prefers them: the alpha ablation when alpha is varied,
    App. F when clustered routings are present, Switch-DiT for learned routing, else Tables 1–2."""
    routings = set(trials["routing"].drop_nulls().to_list()) if trials.height else set()
    dtr = trials.filter(pl.col("routing") == "dtr") if trials.height else trials
    dtr_alphas = set(dtr["alpha"].drop_nulls().to_list())
    order = []
    if "model" in trials.columns and trials["model"].drop_nulls().str.ends_with("-text").any():
        order += ["dtr-coco"]  # text-conditional models: the text-to-image column first
    if len(dtr_alphas) > 1:
        order += ["dtr-t4-imagenet", "dtr-t4-ffhq"]
    if routings & {"cdtr", "ercdt"}:
        order += ["dtr-appf"]
    if "learned" in routings:
        order += ["switch-s", "switch-xl"]
    if trials.height and "multi_expert_n" in trials.columns and (trials["multi_expert_n"].fill_null(1) > 1).any():
        order += ["dtr-appd"]
    order += [s.key for s in PAPER_SOURCES if s.key not in order]
    return order


def paper_reference(row: dict, params: dict, preference: list[str]) -> tuple[PaperSource, dict] | None:
    """The paper values for a configuration: among the tables that report its method, the one
    whose setting is closest to the row's (model, data), ties broken by ``preference``."""
    best = None
    for rank, key in enumerate(preference):
        source = PAPER_BY_KEY[key]
        for method, values in source.entries:
            if _matches(method, params):
                score = (_setting_score(source, row), -rank)
                if best is None or score > best[0]:
                    best = (score, source, values)
    return (best[1], best[2]) if best else None


def setting_differences(source: PaperSource, row: dict) -> list[str]:
    """What differs between a configuration's setting and the paper table's."""
    out = []
    data = dataset_setting(row.get("dataset"), row.get("image_size"), row.get("data_root"))
    if row.get("model") != source.model:
        out.append(f"model {row.get('model')} (paper {source.model})")
    if data != source.dataset:
        out.append(f"data {data} (paper {source.dataset})")
    if not (row.get("feature_set") or "").startswith(source.feature_set):
        out.append(f"features {row.get('feature_set') or '?'} (paper Inception)")
    if source.steps and row.get("steps") and int(row["steps"]) != source.steps:
        out.append(f"{row['steps']:,} steps (paper {source.steps:,})")
    if source.cfg_scale and row.get("cfg_scale") is not None and float(row["cfg_scale"]) != source.cfg_scale:
        out.append(f"cfg {row['cfg_scale']:g} (paper {source.cfg_scale:g})")
    num = row.get("final_eval_samples")
    if num and int(num) != 50_000:
        out.append(f"{int(num):,} samples (paper 50,000)")
    return out


def paper_notes(used: dict[str, list[dict]]) -> list[tuple[str, str]]:
    """(marker, note) per paper table in ``used`` (source key -> the configuration rows that
    cite it, in order): the table's setting, and whether and how the rows' settings differ."""
    notes = []
    for i, (key, members) in enumerate(used.items()):
        source = PAPER_BY_KEY[key]
        diffs = list(dict.fromkeys(d for m in members for d in setting_differences(source, m)))
        note = f"{source.title}: {source.setting_text()}. "
        if all(setting_matches(source, m) for m in members):
            note += "Setting matches (model, data, Inception features)" + (
                f"; differences: {'; '.join(diffs)}." if diffs else ".")
        else:
            note += ("Settings differ — " + "; ".join(diffs) + ". The paper values are a reference for the "
                     "ordering of methods, not numbers this sweep should reproduce.")
        notes.append((chr(ord("a") + i), note))
    return notes
