"""Generator families side by side: one table and one samples sheet from several pipeline run dirs.

Each run dir holds one family's pipeline (`gan.model=lcgan|spade|diffusion`) on the same data and
split (a copy of one run dir, docs/generators.md); this reads what their stages wrote:

    python -m lcgan_lightning.report.families RUN_LCGAN RUN_SPADE RUN_DIFFUSION --out DIR \
        [--reference RUN_LCGAN] [--sheet-seed 42] [--time-images 8]

and writes `DIR/families.json`, `DIR/families.md` (per family and subset: GAN training time, the
selected candidates, sampling rate measured here, copy rates, precision/recall, MiFID, diversity, the
judge's FCN score at selection and on CTs of new vs of training masks (the novel sets' judge check), and
each variant's Δ strict DSC against the original and against the reference run's "+ GAN" rows, paired
by repeat: `comparison.compare_run_dirs`) and `DIR/families_samples_<patients>p.png` (test masks | real |
each family's selected generator).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean
from typing import Any

import numpy as np

from lcgan_lightning.atomic_io import write_json_atomic
from lcgan_lightning.comparison import ComparisonError, compare_run_dirs, fmt_change
from lcgan_lightning.figures import contact_sheet, largest_per_class
from lcgan_lightning.generator_families import FAMILIES, PAPER_FAMILY, generator_of
from lcgan_lightning.layout import RunLayout, train_result
from lcgan_lightning.run_plan import RunPlan
from lcgan_lightning.selection.novel_check import JUDGE_CHECK
from lcgan_lightning.variants import variant

AUDIT_KEYS = ("copy_rate_pixel", "copy_rate_feature", "precision", "recall", "mifid", "diversity_ssim")


def family_name(results: dict[str, Any]) -> str:
    """"LcGAN", "SPADE", "diffusion (DDIM 20)" for a results.json."""
    label = generator_of(results)
    if label is None:
        return FAMILIES[PAPER_FAMILY]
    name, _, sampling = label.partition(", ")
    return f"{name} ({sampling})" if sampling else name


def _mean_or_none(values: list[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return mean(kept) if kept else None


def _selected_ckpts(layout: RunLayout, fraction: float, seeds: list[int]) -> dict[int, str]:
    out = {}
    for seed in seeds:
        if layout.selected(seed).is_file():
            entry = json.loads(layout.selected(seed).read_text()).get(str(fraction))
            if entry:
                out[seed] = entry["checkpoint"]
    return out


def images_per_second(ckpt: str, masks: np.ndarray, n_images: int) -> float:
    """Images/s of a checkpoint's generator here (`bench_generators.time_to_images`, one run)."""
    from lcgan_lightning.bench_generators import time_to_images
    from lcgan_lightning.models.generation import load_generator

    return n_images / time_to_images(load_generator(ckpt), masks[:n_images], repeats=1)


def _vs_reference(layout: RunLayout, reference: RunLayout, fraction: float, folder: str,
                  seeds: list[int]) -> dict[str, Any] | None:
    pairs = [(layout.seg_dir(fraction, folder, s), reference.seg_dir(fraction, "gan", s)) for s in seeds]
    pairs = [(v, r) for v, r in pairs if (v / "predictions.npz").is_file() and (r / "predictions.npz").is_file()]
    if not pairs:
        return None
    try:
        result = compare_run_dirs([v for v, _ in pairs], [r for _, r in pairs])
    except ComparisonError as err:
        return {"error": str(err)}
    return {**result["metrics"]["dsc"], "n_repeats": len(pairs)}


def subset_rows(run_dir: Path, reference: Path | None, test_masks: np.ndarray | None,
                time_images: int) -> list[dict[str, Any]]:
    """One row per subset of one family's run dir (see the module docstring)."""
    layout = RunLayout(run_dir)
    results = json.loads(layout.results.read_text())
    plan = RunPlan.load(layout.run_plan)
    seeds = list(plan.seeds)
    rows = []
    for subset in plan.subsets:
        fraction, block = subset.fraction, results["fractions"][str(subset.fraction)]
        gan_results = [train_result(layout.gan_dir(fraction, s, max(subset.gan_epochs))) for s in seeds]
        gan_s = [json.loads(p.read_text()).get("wall_s") for p in gan_results if p.is_file()]
        ckpts = _selected_ckpts(layout, fraction, seeds)
        novel = [json.loads(p.read_text()) for s in seeds if (p := layout.novel_dir(fraction, s) / JUDGE_CHECK).is_file()]
        audit = block.get("audit") or {}
        selected = list((block.get("selected_per_repeat") or {}).values()) or [block.get("selected") or {}]
        row: dict[str, Any] = {
            "family": family_name(results), "run_dir": str(run_dir), "patients": subset.patients,
            "fraction": fraction, "repeats": len(seeds), "candidate_epochs": list(subset.gan_epochs),
            "gan_train_s": _mean_or_none(gan_s),
            "selected_epochs": [v.get("epochs") for v in selected],
            "fcn_score_selection": _mean_or_none([v.get("fcn_score") for v in selected]),
            "fcn_score_new_masks": _mean_or_none([c["new_masks"]["fcn_score"] for c in novel]),
            "fcn_score_training_masks": _mean_or_none([c["training_masks"]["fcn_score"] for c in novel]),
            "images_per_s": (images_per_second(ckpts[seeds[0]], test_masks, time_images)
                             if test_masks is not None and seeds[0] in ckpts and time_images > 0 else None),
            **{k: audit.get(k) for k in AUDIT_KEYS},
            "variants": {},
        }
        for v in (variant(name) for name in plan.variants):
            if v.is_original or "dsc" not in (block.get(v.key) or {}):
                continue
            entry = {"dsc": block[v.key]["dsc"], "vs_original": (block[v.key].get("vs_original") or {}).get("dsc")}
            if reference is not None and reference.resolve() != run_dir.resolve() and (
                    v.augment.reads_synthetic or v.augment.reads_novel):
                entry["vs_reference_gan"] = _vs_reference(layout, RunLayout(reference), fraction, v.name, seeds)
            row["variants"][v.key] = entry
        rows.append(row)
    return rows


def _test_examples(run_dir: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks and real CTs of the test split: the largest lesion of each class first, then the largest others."""
    from omegaconf import OmegaConf

    from lcgan_lightning.data.datamodule import open_datamodule

    dm = open_datamodule(OmegaConf.load(RunLayout(run_dir).data_config), augment="none", fraction=1.0)
    assert dm.test_slices is not None  # open_datamodule sets the splits up
    masks, images = np.asarray(dm.test_slices.masks), np.asarray(dm.test_slices.images, dtype=np.float32)
    order = list(dict.fromkeys(largest_per_class(masks).values()))  # one row may be the largest of two classes
    rest = [int(i) for i in np.argsort(-(masks > 0).reshape(len(masks), -1).sum(1)) if int(i) not in order]
    rows = (order + rest)[:n]
    return masks[rows].astype(np.int64), images[rows]


def samples_sheet(run_dirs: list[Path], masks: np.ndarray, real: np.ndarray, patients: int, seed: int,
                  path: Path) -> Path | None:
    """mask | real | one row per family: the selected generator of `seed` at the `patients` subset."""
    from lcgan_lightning.models.generation import generate_set, load_generator

    rows = []
    for run_dir in run_dirs:
        layout = RunLayout(run_dir)
        plan = RunPlan.load(layout.run_plan)
        subset = next((s for s in plan.subsets if s.patients == patients), None)
        ckpt = _selected_ckpts(layout, subset.fraction, [seed]).get(seed) if subset else None
        if ckpt is None:
            continue
        name = family_name(json.loads(layout.results.read_text()))
        rows.append((name, generate_set(load_generator(ckpt), masks, seed=seed, progress=False).astype(np.float32)))
    if not rows:
        return None
    return contact_sheet(path, masks, real, rows, title=f"test masks, generators trained on {patients} patients "
                                                           f"(repeat {seed})")


def markdown(rows: list[dict[str, Any]]) -> str:
    """The families table and the Δ DSC table as markdown."""
    def f(x: Any, spec: str = ".3f") -> str:
        return "—" if x is None else format(x, spec)

    out = ["| generator | patients | GAN training (s per repeat) | selected epochs (of) | images/s | "
           "copy rate pixel / feature | precision / recall | MiFID | diversity SSIM | FCN score (selection) | "
           "FCN score new / training masks |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['family']} | {r['patients']} | {f(r['gan_train_s'], '.0f')} | "
                   f"{', '.join(str(e) for e in r['selected_epochs'])} ({', '.join(str(e) for e in r['candidate_epochs'])}) | "
                   f"{f(r['images_per_s'], '.2f')} | {f(r['copy_rate_pixel'], '.2f')} / {f(r['copy_rate_feature'], '.2f')} | "
                   f"{f(r['precision'], '.2f')} / {f(r['recall'], '.2f')} | {f(r['mifid'], '.1f')} | "
                   f"{f(r['diversity_ssim'])} | {f(r['fcn_score_selection'])} | "
                   f"{f(r['fcn_score_new_masks'])} / {f(r['fcn_score_training_masks'])} |")
    out += ["", "| generator | patients | variant | strict DSC | Δ vs original | Δ vs + GAN (LcGAN) |", "|---|---|---|---|---|---|"]
    for r in rows:
        for name, v in r["variants"].items():
            ref = v.get("vs_reference_gan")
            ref_text = "—" if ref is None else ref.get("error") or f"{fmt_change(ref)} (R = {ref['n_repeats']})"
            out.append(f"| {r['family']} | {r['patients']} | {name} | {f(v['dsc'])} | {fmt_change(v['vs_original'])} | "
                       f"{ref_text} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="pipeline run dirs, one generator family each")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reference", type=Path, help="run dir whose '+ GAN' rows every variant is compared with")
    parser.add_argument("--sheet-seed", type=int, default=42, help="repeat whose selected generators the sheet shows")
    parser.add_argument("--sheet-images", type=int, default=6)
    parser.add_argument("--time-images", type=int, default=8, help="images timed per family (0: no timing)")
    args = parser.parse_args(argv)
    for d in [*args.run_dirs, *([args.reference] if args.reference else [])]:
        if not RunLayout(d).results.is_file():
            parser.error(f"{d}: no results.json (run the pipeline's report stage there first)")
    masks, real = _test_examples(args.run_dirs[0], max(args.sheet_images, args.time_images))
    rows = [row for d in args.run_dirs for row in subset_rows(d, args.reference, masks, args.time_images)]
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "families.json", rows)
    (args.out / "families.md").write_text(markdown(rows))
    for patients in sorted({r["patients"] for r in rows}):
        samples_sheet(args.run_dirs, masks[: args.sheet_images], real[: args.sheet_images], patients,
                      args.sheet_seed, args.out / f"families_samples_{patients}p.png")
    print(markdown(rows))


if __name__ == "__main__":
    main()
