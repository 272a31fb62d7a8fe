"""results.json of one pipeline run: every figure of Tables 1-3 from the run's files only.

Reads (paths from `RunLayout`, what ran from `run_plan.json`): the judge's and every segmentation run's
test_metrics.json and predictions.npz, selected.json and the synthetic sets' audit.json files
(optional: no audit, no audit block).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lcgan_lightning.comparison import METHOD, compare_to_original, compared_with_gan
from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.generator_families import diffusion_sampler, gan_model, sample_steps
from lcgan_lightning.inference import POWER
from lcgan_lightning.layout import TEST_METRICS, RunLayout
from lcgan_lightning.report.verdicts import adjust_families, calibration, design
from lcgan_lightning.run_plan import RunPlan
from lcgan_lightning.variants import variant

METRIC_KEYS = ("dsc", "binary_dsc", "precision", "recall")
CLASS_KEYS = ("per_class_dsc", "per_class_dsc_present")
AUDIT_KEYS = ("copy_rate_feature", "copy_rate_pixel", "fid", "mifid", "precision", "recall", "diversity_ssim")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def run_config(layout: RunLayout) -> dict[str, Any]:
    """The resolved pipeline config the run wrote (`pipeline.yaml`)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(layout.pipeline_config), resolve=False)  # type: ignore[return-value]


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _metrics(raw: dict[str, Any]) -> dict[str, Any]:
    """The METRICS block of results.json from a test_metrics.json (extra keys dropped).

    A per-class value is null where the class has no DSC (per_class_dsc: in neither truth nor
    prediction on the whole test set; per_class_dsc_present: in no truth image).
    """
    return {
        **{k: _float_or_none(raw.get(k)) for k in METRIC_KEYS},
        **{key: {c: _float_or_none(raw.get(key, {}).get(c)) for c in LESION_CLASSES} for key in CLASS_KEYS},
    }


def _aggregate(runs: list[dict[str, Any]], reduce: Callable[[list[float]], float]) -> dict[str, Any]:
    """Reduce each figure over repeats, ignoring the runs where it is null."""

    def over_runs(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return reduce(present) if present else None

    return {
        **{k: over_runs([r[k] for r in runs]) for k in METRIC_KEYS},
        **{key: {c: over_runs([r[key][c] for r in runs]) for c in LESION_CLASSES} for key in CLASS_KEYS},
    }


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def selected_block(sel: dict[str, Any]) -> dict[str, Any]:
    return {
        "epochs": int(sel["epochs"]),
        "fcn_score": float(sel["fcn_score"]),
        "sharpness": float(sel["sharpness"]),
        "sharpness_ratio": _float_or_none(sel.get("sharpness_ratio")),
        "ssim": _float_or_none(sel.get("ssim")),
        # null when the realism classifier could not be trained (scores.json says why)
        "fooled": _float_or_none(sel["fooled"]),
    }


def collect_results(run_dir: Path, scale: str, level: float = 0.95
                    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(results.json content, per-repeat metrics, std over repeats) from the run dir's files.

    Reads exactly the runs the plan lists (subsets x variants x repeats); a missing
    `test_metrics.json` is an error naming every missing file, never a silently shorter table.
    """
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    plan = RunPlan.load(layout.run_plan)
    cfg = run_config(layout)
    seeds = plan.seeds
    selected = {s: read_json(layout.selected(s)) for s in seeds}
    seg_model = (cfg.get("seg") or {}).get("model")
    gan = cfg.get("gan") or {}
    results: dict[str, Any] = {
        "scale": scale,
        "image_size": int(cfg["data"]["image_size"]),
        "seed": plan.seed,
        "repeats": len(seeds),
        "budget": plan.budget,
        "statistics": {"method": METHOD, "level": level, "power": POWER},
        "split_per_repeat": plan.split_per_repeat,
        "seg_model": seg_model,
        "judge_model": (cfg.get("judge") or {}).get("model") or seg_model,
        "gan_model": gan_model(gan),
        "gan_sample_steps": sample_steps(gan),
        "gan_sampler": diffusion_sampler(gan),
        "full": _full_row(layout, plan),
        "fractions": {},
    }
    per_seed: dict[str, Any] = {}
    std: dict[str, Any] = {}
    missing: list[str] = []
    augments = list(plan.variants)
    keys = {a: variant(a).key for a in augments}
    for subset in plan.subsets:
        fkey, fraction = subset.key, subset.fraction
        block: dict[str, Any] = {"patients": subset.patients, "slices": subset.slices}
        for aug in augments:
            runs = {}
            for seed in seeds:
                path = layout.seg_dir(fraction, aug, seed) / TEST_METRICS
                if path.exists():
                    runs[f"seed={seed}"] = _metrics(read_json(path))
                else:
                    missing.append(str(path.relative_to(run_dir)))
            if runs:
                block[keys[aug]] = _aggregate(list(runs.values()), statistics.fmean)
                per_seed.setdefault(fkey, {})[keys[aug]] = runs
                std.setdefault(fkey, {})[keys[aug]] = _aggregate(list(runs.values()), _std)
        if not missing:
            for name, vs in compare_to_original(layout, fraction, augments, seeds, keys, level).items():
                block[name]["vs_original"] = vs
            if vs_gan := compared_with_gan(augments):
                for name, vs in compare_to_original(layout, fraction, vs_gan, seeds, keys, level,
                                                    reference="gan").items():
                    block[name]["vs_gan"] = vs
        if "synthetic_only" in block and "original" in block:
            block["synthetic_only"]["tstr_trtr"] = _tstr_ratio(block["synthetic_only"], block["original"])
        audits = {f"seed={s}": a for s in seeds if (a := _audit(layout, fraction, s)) is not None}
        if audits:
            block["audit"] = _mean_audit(list(audits.values()))
            per_seed.setdefault(fkey, {})["audit"] = audits
            results.setdefault("audit", {}).update({f"{fkey}/{s}": a for s, a in audits.items()})
        block["selected"] = selected_block(selected[seeds[0]][fkey])
        if len(seeds) > 1:
            block["selected_per_repeat"] = {f"seed={s}": selected_block(selected[s][fkey]) for s in seeds}
        results["fractions"][fkey] = block
    if missing:
        raise FileNotFoundError(f"{run_dir}: segmentation results missing:\n  " + "\n  ".join(missing))
    results["statistics"]["families"] = adjust_families(results, level)
    for fkey, block_design in design(results, std).items():
        results["fractions"][fkey]["design"] = block_design
    results["calibration"] = calibration(layout, plan, level)
    return results, per_seed, std


def _full_row(layout: RunLayout, plan: RunPlan) -> dict[str, Any]:
    """The judge's test metrics (the "full" row); with a split per repeat, the mean over the judges."""
    judges = [_metrics(read_json(layout.judge_dir_of(s) / TEST_METRICS)) for s in plan.judge_seeds]
    return judges[0] if len(judges) == 1 else _aggregate(judges, statistics.fmean)


def _tstr_ratio(synthetic: dict[str, Any], original: dict[str, Any]) -> dict[str, float | None]:
    """TSTR / TRTR: each metric of the synthetic-only segmenter over the original's (null if 0)."""
    return {k: synthetic[k] / original[k] if synthetic[k] is not None and original[k] else None
            for k in METRIC_KEYS}


def _audit(layout: RunLayout, fraction: float, seed: int) -> dict[str, Any] | None:
    """The headline numbers of a set's audit.json, or None when it has no audit."""
    from lcgan_lightning.audit import audit_summary

    path = layout.audit(fraction, seed)
    return audit_summary(read_json(path)) if path.is_file() else None


def _mean_audit(audits: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(values: list[Any]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.fmean(present) if present else None

    out: dict[str, Any] = {k: mean([a[k] for a in audits]) for k in AUDIT_KEYS}
    out["mask_fidelity"] = {c: mean([a["mask_fidelity"][c] for a in audits]) for c in LESION_CLASSES}
    out["n_synthetic"] = mean([a["n_synthetic"] for a in audits])
    return out
