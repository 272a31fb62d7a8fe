"""Report of one pipeline run: paper Tables 1–3 and Fig. 7 from this run's files only.

Reads (paths from `RunLayout`): the judge's and every segmentation run's test_metrics.json,
selected.json, scores.json, pipeline_state.json, the synthetic sets' sample grids and audit.json
files (optional: no audit, no audit section); writes
results.json (schema in the README), results_per_seed.json, report.md and figures/*.png.
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from lcgan_lightning.comparison import METHOD, compare_to_original, compared_with_gan, fmt_change
from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.layout import TEST_METRICS, RunLayout, fraction_key
from lcgan_lightning.paper_numbers import PAPER
from lcgan_lightning.synthesize import SAMPLES

# results.json names of the augmentation variants (config value -> key)
VARIANTS: dict[str, str] = {"none": "original", "gan": "gan", "traditional": "traditional", "both": "both",
                            "synthetic_only": "synthetic_only"}
VARIANT_LABELS: dict[str, str] = {
    "original": "Selected (original)",
    "gan": "+ GAN generated",
    "traditional": "+ traditional aug.",
    "both": "+ both",
    "synthetic_only": "Synthetic only (TSTR)",
}
PAPER_VARIANTS = ("original", "gan", "traditional", "both")  # always in Tables 1-2; the others only when run
# new masks (mask bank), and k synthetic CTs / new masks per training mask (pipeline augment "A-kK")
VARIANTS |= {"gan_novel": "gan_novel", "both_novel": "both_novel"}
VARIANT_LABELS |= {"gan_novel": "+ GAN, new masks", "both_novel": "+ both, new masks"}
VARIANTS |= {f"{a}-k{k}": f"{a}-k{k}" for a in ("gan", "both", "gan_novel", "both_novel") for k in (2, 4)}
VARIANT_LABELS |= {f"{a}-k{k}": f"{VARIANT_LABELS[a]} (k={k})" for a in ("gan", "both", "gan_novel", "both_novel")
                   for k in (2, 4)}
METRIC_KEYS = ("dsc", "binary_dsc", "precision", "recall")
AUDIT_COLUMNS = {  # audit_summary key -> column title
    "copy_rate_feature": "copy rate (cosine)",
    "copy_rate_pixel": "copy rate (pixel L2)",
    "fid": "FID (judge)",
    "mifid": "MiFID",
    "precision": "precision",
    "recall": "recall",
    "diversity_ssim": "diversity SSIM",
}
CLASS_KEYS = ("per_class_dsc", "per_class_dsc_present")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _metrics(raw: dict[str, Any]) -> dict[str, Any]:
    """The METRICS block of results.json (README) from a test_metrics.json (extra keys dropped).

    A per-class value is null where the class has no DSC (per_class_dsc: in neither truth nor
    prediction on the whole test set; per_class_dsc_present: in no truth image).
    """
    return {
        **{k: _float_or_none(raw.get(k)) for k in METRIC_KEYS},
        **{key: {c: _float_or_none(raw.get(key, {}).get(c)) for c in LESION_CLASSES} for key in CLASS_KEYS},
    }


def _aggregate(runs: list[dict[str, Any]], reduce) -> dict[str, Any]:
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


def run_plan(layout: RunLayout) -> dict[str, Any]:
    """What the pipeline ran: subsets (fraction, patients, slices), augments, repeat seeds, budget."""
    cfg = _load_yaml(layout.pipeline_config)
    seeds = cfg.get("seeds") or [int(cfg["seed"]) + r for r in range(int(cfg.get("repeats", 1)))]
    if layout.subsets.is_file():
        subsets = _read_json(layout.subsets)
    else:
        subsets = {fraction_key(f): {"fraction": float(f)} for f in cfg["fractions"]}
    return {"cfg": cfg, "subsets": subsets, "augments": list(cfg["augments"]), "seeds": [int(s) for s in seeds],
            "budget": cfg.get("budget", "epochs")}


def _selected_block(sel: dict[str, Any]) -> dict[str, Any]:
    return {
        "epochs": int(sel["epochs"]),
        "fcn_score": float(sel["fcn_score"]),
        "sharpness": float(sel["sharpness"]),
        "sharpness_ratio": _float_or_none(sel.get("sharpness_ratio")),
        "ssim": _float_or_none(sel.get("ssim")),
        # null when the realism classifier could not be trained (scores.json says why)
        "fooled": _float_or_none(sel["fooled"]),
    }


def collect_results(run_dir: Path, scale: str, n_boot: int = 2000, level: float = 0.95
                    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(results.json content, per-repeat metrics, std over repeats) from the run dir's files.

    Reads exactly the runs `pipeline.yaml` configured (subsets × augments × repeats); a missing
    `test_metrics.json` is an error naming every missing file, never a silently shorter table.
    """
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    plan = run_plan(layout)
    seeds = plan["seeds"]
    selected = {s: _read_json(layout.selected(s)) for s in seeds}
    split_per_repeat = bool(plan["cfg"].get("split_per_repeat", False))
    seg_model = (plan["cfg"].get("seg") or {}).get("model")
    results: dict[str, Any] = {
        "scale": scale,
        "image_size": int(plan["cfg"]["data"]["image_size"]),
        "seed": int(plan["cfg"]["seed"]),
        "repeats": len(seeds),
        "budget": plan["budget"],
        "statistics": {"method": METHOD, "n_boot": n_boot, "level": level},
        "split_per_repeat": split_per_repeat,
        "seg_model": seg_model,
        "judge_model": (plan["cfg"].get("judge") or {}).get("model") or seg_model,
        "full": _full_row(layout, seeds, split_per_repeat),
        "fractions": {},
    }
    per_seed: dict[str, Any] = {}
    std: dict[str, Any] = {}
    missing: list[str] = []
    for fkey, info in plan["subsets"].items():
        fraction = float(info["fraction"])
        block: dict[str, Any] = {k: info[k] for k in ("patients", "slices") if k in info}
        for aug in plan["augments"]:
            name = VARIANTS[aug]
            runs = {}
            for seed in seeds:
                path = layout.seg_dir(fraction, aug, seed) / TEST_METRICS
                if path.exists():
                    runs[f"seed={seed}"] = _metrics(_read_json(path))
                else:
                    missing.append(str(path.relative_to(run_dir)))
            if runs:
                block[name] = _aggregate(list(runs.values()), statistics.fmean)
                per_seed.setdefault(fkey, {})[name] = runs
                std.setdefault(fkey, {})[name] = _aggregate(list(runs.values()), _std)
        if not missing:
            for name, vs in compare_to_original(layout, fraction, plan["augments"], seeds, VARIANTS,
                                                n_boot, level).items():
                block[name]["vs_original"] = vs
            if vs_gan := compared_with_gan(plan["augments"]):
                for name, vs in compare_to_original(layout, fraction, vs_gan, seeds, VARIANTS, n_boot, level,
                                                    reference="gan").items():
                    block[name]["vs_gan"] = vs
        if "synthetic_only" in block and "original" in block:
            block["synthetic_only"]["tstr_trtr"] = _tstr_ratio(block["synthetic_only"], block["original"])
        audits = {f"seed={s}": a for s in seeds if (a := _audit(layout, fraction, s)) is not None}
        if audits:
            block["audit"] = _mean_audit(list(audits.values()))
            per_seed.setdefault(fkey, {})["audit"] = audits
            results.setdefault("audit", {}).update({f"{fkey}/{s}": a for s, a in audits.items()})
        block["selected"] = _selected_block(selected[seeds[0]][fkey])
        if len(seeds) > 1:
            block["selected_per_repeat"] = {f"seed={s}": _selected_block(selected[s][fkey]) for s in seeds}
        results["fractions"][fkey] = block
    if missing:
        raise FileNotFoundError(f"{run_dir}: segmentation results missing:\n  " + "\n  ".join(missing))
    return results, per_seed, std


def _full_row(layout: RunLayout, seeds: list[int], split_per_repeat: bool) -> dict[str, Any]:
    """The judge's test metrics (the "full" row); with a split per repeat, the mean over the judges."""
    if not split_per_repeat:
        return _metrics(_read_json(layout.judge_dir / TEST_METRICS))
    return _aggregate([_metrics(_read_json(layout.judge_dir_of(s) / TEST_METRICS)) for s in seeds], statistics.fmean)


def _tstr_ratio(synthetic: dict[str, Any], original: dict[str, Any]) -> dict[str, float | None]:
    """TSTR / TRTR: each metric of the synthetic-only segmenter over the original's (null if 0)."""
    return {k: synthetic[k] / original[k] if synthetic[k] is not None and original[k] else None
            for k in METRIC_KEYS}


def _audit(layout: RunLayout, fraction: float, seed: int) -> dict[str, Any] | None:
    """The headline numbers of a set's audit.json, or None when it has no audit."""
    from lcgan_lightning.audit import audit_summary

    path = layout.audit(fraction, seed)
    return audit_summary(_read_json(path)) if path.is_file() else None


def _mean_audit(audits: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(values: list[Any]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.fmean(present) if present else None

    out: dict[str, Any] = {k: mean([a[k] for a in audits]) for k in AUDIT_COLUMNS}
    out["mask_fidelity"] = {c: mean([a["mask_fidelity"][c] for a in audits]) for c in LESION_CLASSES}
    out["n_synthetic"] = mean([a["n_synthetic"] for a in audits])
    return out


def _audit_section(layout: RunLayout, results: dict[str, Any], seeds: list[int], figures: Path) -> list[str]:
    """Audit table per subset and repeat, mask fidelity per class, closest-pairs figures."""
    from lcgan_lightning.audit import audit_summary

    rows = []
    for fkey, block in results["fractions"].items():
        for seed in seeds:
            path = layout.audit(float(fkey), seed)
            if path.is_file():
                rows.append((fkey, block, seed, _read_json(path)))
    if not rows:
        return []
    lines = ["## Synthetic-set audit — memorisation, fidelity, diversity", "",
             "Each synthetic set against the real training slices of its subset, in the judge's feature space "
             "(`audit.json` beside each set; definitions in the README, \"Audit a synthetic set\"). "
             f"Copy rate: share closer to a training slice than the {rows[0][3]['config']['copy_percentile']:g}th "
             "percentile of real-to-real distances between different patients (≈ that percentile for a set as "
             "new as unseen patients). Diversity SSIM: 1.0 = the generator ignores its noise.", "",
             "| subset | seed | images | " + " | ".join(AUDIT_COLUMNS.values()) + " | most-copied patient |",
             "|---" * (len(AUDIT_COLUMNS) + 4) + "|"]
    for fkey, block, seed, audit in rows:
        s = audit_summary(audit)
        feature = audit["memorisation"].get("feature")
        top = feature["most_copied_patients"] if feature else []
        who = (f"{top[0]['patient']} ({top[0]['copies']})" if top
               else "— (1 training patient: no copy rate)" if audit.get("memorisation_skipped") else "—")
        lines.append(f"| {subset_title(fkey, block)} | {seed} | {s['n_synthetic']} | "
                     + " | ".join(_fmt(s[k]) for k in AUDIT_COLUMNS) + f" | {who} |")
    lines += ["", "**Mask fidelity** — per class, the judge's mean Dice on the synthetic images whose mask holds "
              "the class (— where no mask holds it); higher = the lesion is drawn where the mask asks.", "",
              "| subset | seed | " + " | ".join(LESION_CLASSES) + " |", "|---" * (len(LESION_CLASSES) + 2) + "|"]
    for fkey, block, seed, audit in rows:
        fid = audit_summary(audit)["mask_fidelity"]
        lines.append(f"| {subset_title(fkey, block)} | {seed} | " + " | ".join(_fmt(fid[c]) for c in LESION_CLASSES)
                     + " |")
    lines += ["", "**Closest synthetic / real training pairs** (feature space; top: synthetic, bottom: its nearest "
              "real slice and patient)", ""]
    for fkey, block, seed, audit in rows:
        rel = audit.get("figures", {}).get("feature")
        src = layout.synthetic_dir(float(fkey), seed) / rel if rel else None
        if seed == seeds[0] and src is not None and src.is_file():
            name = f"audit_closest_frac={fkey}.png"
            shutil.copyfile(src, figures / name)
            lines += [f"{subset_title(fkey, block)} (repeat seed {seed})", "", f"![closest pairs {fkey}](figures/{name})",
                      ""]
    return lines


def _load_yaml(path: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # type: ignore[return-value]


def _fmt(mean: float | None, sd: float | None = None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.3f}" if not sd else f"{mean:.3f} ± {sd:.3f}"


def subset_title(fkey: str, block: dict[str, Any]) -> str:
    """Column title of a subset: '2.5 %' or '8 patients (2.9 %)'."""
    pct = f"{float(fkey) * 100:.3g} %"
    if "patients" not in block:
        return pct
    n = block["patients"]
    return f"{n} patient{'' if n == 1 else 's'} ({pct})"


def _tables(results: dict[str, Any], std: dict[str, Any]) -> list[str]:
    fracs = list(results["fractions"])
    titles = [subset_title(f, results["fractions"][f]) for f in fracs]
    head = "| | " + " | ".join(f"{t} (ours / paper)" for t in titles) + " |"
    sep = "|---" * (len(fracs) + 1) + "|"
    spread = "mean ± std over repeats" if results.get("repeats", 1) > 1 else "one repeat"
    if results.get("split_per_repeat"):
        spread += " (each repeat with its own patient split and judge)"
    change = ("Under each variant: Δ vs original [95 % bootstrap CI over test patients] and the verdict "
              "(better / no detectable change / worse).")

    def row(label: str, key: str, metric: str) -> list[str]:
        cells, changes = [], []
        for f in fracs:
            ours = results["fractions"][f].get(key)
            paper = PAPER["fractions"].get(f, {}).get(key, {}).get(metric)
            sd = std.get(f, {}).get(key, {}).get(metric)
            cell = _fmt(ours[metric], sd) if ours else "—"
            cells.append(f"{cell} / {paper:.3f}" if paper is not None else cell)
            changes.append(fmt_change((ours or {}).get("vs_original", {}).get(metric)))
        out = [f"| {label} | " + " | ".join(cells) + " |"]
        if key != "original":
            out.append("| ↳ Δ vs original | " + " | ".join(changes) + " |")
        vs_gan = [(results["fractions"][f].get(key) or {}).get("vs_gan", {}).get(metric) for f in fracs]
        if any(vs_gan):  # new masks / k > 1: against one synthetic CT per training mask
            out.append("| ↳ Δ vs + GAN | " + " | ".join(fmt_change(v) for v in vs_gan) + " |")
        if key == "synthetic_only":
            ratios = [(results["fractions"][f].get(key) or {}).get("tstr_trtr", {}).get(metric) for f in fracs]
            out.append("| ↳ TSTR / TRTR | " + " | ".join(_fmt(r) for r in ratios) + " |")
        return out

    def table(metric: str, full_paper: float | None) -> list[str]:
        lines = [head, sep]
        for key, label in VARIANT_LABELS.items():
            if key in PAPER_VARIANTS or any(results["fractions"][f].get(key) for f in fracs):  # + variants the run has
                lines += row(label, key, metric)
        full = _fmt(results["full"][metric])
        judge = results.get("judge_model")
        other = f", {judge} judge" if judge and judge != results.get("seg_model") else ""  # not the subsets' network
        lines += [f"| Entire dataset (100 %{other}) | {full}" + (f" / {full_paper:.3f}" if full_paper else "") + " |", ""]
        return lines

    lines = ["## Table 1 — DSC", "",
             f"Strict DSC as in the paper: per test image, mean Dice over the lesion classes present in truth or "
             f"prediction (background ignored), averaged over images; {spread}. {change}", ""]
    lines += table("dsc", PAPER["full"]["dsc"])
    lines += ["**Binary lesion DSC** (any lesion vs background, per image; not in the paper)", ""]
    lines += table("binary_dsc", None)
    lines += ["## Table 2 — detection precision and recall (test set)", "",
              f"Lesion components matched at Dice ≥ 0.25 (README, Metric definitions); {spread}. {change}", ""]
    for metric in ("precision", "recall"):
        lines += [f"**{metric}**", ""] + table(metric, PAPER["full"][metric])

    lines += ["## Table 3 — DSC per class (ours / paper)", "",
              "Per class: mean Dice over the test images whose TRUTH holds the class (the definition that "
              "matches the paper's per-class values, which lie far above its overall DSC); mean over repeats, "
              "then the verdict of the paired comparison with original.", ""]
    lines += ["| training data | " + " | ".join(LESION_CLASSES) + " |", "|---" * (len(LESION_CLASSES) + 1) + "|"]
    for f, title in zip(fracs, titles, strict=True):
        for key, label in VARIANT_LABELS.items():
            ours = results["fractions"][f].get(key)
            if not ours:
                continue
            paper = PAPER["fractions"].get(f, {}).get(key, {}).get("per_class_dsc", {})
            vs = ours.get("vs_original", {}).get("per_class_dsc_present", {})
            cells = []
            for c in LESION_CLASSES:
                cell = _fmt(ours["per_class_dsc_present"][c])
                cell += f" / {paper[c]:.3f}" if c in paper else ""
                cell += f" · {vs[c]['verdict']}" if c in vs else ""
                cells.append(cell)
            lines.append(f"| {title} {label} | " + " | ".join(cells) + " |")
    full = results["full"]["per_class_dsc_present"]
    cells = [f"{_fmt(full[c])} / {PAPER['full']['per_class_dsc'][c]:.3f}" for c in LESION_CLASSES]
    lines += ["| 100 % (entire dataset) | " + " | ".join(cells) + " |", ""]
    return lines


def _fig7(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fracs = list(results["fractions"])
    x = [float(f) * 100 for f in fracs]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, metric in zip(axes, ("dsc", "precision", "recall"), strict=True):
        for i, key in enumerate(("gan", "traditional", "both")):
            vs = [(results["fractions"][f].get(key) or {}).get("vs_original", {}).get(metric) for f in fracs]
            ys = np.array([v["diff"] if v and v["diff"] is not None else np.nan for v in vs])
            lo = np.array([v["ci"][0] if v and v["ci"][0] is not None else np.nan for v in vs])
            hi = np.array([v["ci"][1] if v and v["ci"][1] is not None else np.nan for v in vs])
            xs = [v * (1 + 0.04 * (i - 1)) for v in x]  # side by side
            ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], marker="o", capsize=3, label=VARIANT_LABELS[key])
        paper = [
            PAPER["fractions"][f]["both"][metric] - PAPER["fractions"][f]["original"][metric]
            if f in PAPER["fractions"]
            else np.nan
            for f in fracs
        ]
        if not np.all(np.isnan(paper)):
            ax.plot(x, paper, "k--", marker="x", label="paper, + both")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(x, [f"{v:.3g}" for v in x])
        ax.set_xlabel("training patients (%)")
        ax.set_title(f"{metric.upper() if metric == 'dsc' else metric}: change vs original (95 % CI)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sample_grid(layout: RunLayout, fraction: float, seed: int, path: Path) -> bool:
    """Copy the synthetic set's mask | real | synthetic grid (drawn by the synthesize stage) to `path`."""
    grid = layout.synthetic_dir(fraction, seed) / SAMPLES
    if not grid.is_file():
        return False
    shutil.copyfile(grid, path)
    return True


def _selection_table(layout: RunLayout, seeds: list[int]) -> list[str]:
    cols = ["fraction", "epochs", "fcn_score", "sharpness_ratio", "ssim", "sharpness", "fooled_0.1", "fooled_0.5"]
    lines = ["## Generator selection", ""]
    conventions = _read_json(layout.scores(seeds[0])).get("conventions")
    if isinstance(conventions, dict):
        lines += [f"- **{k}**: {v}" for k, v in conventions.items()] + [""]
    for seed in seeds:
        lines += _selection_rows(layout, seed, cols, len(seeds) > 1)
    return lines


def _selection_rows(layout: RunLayout, seed: int, cols: list[str], title: bool) -> list[str]:
    scores = _read_json(layout.scores(seed))
    selected = _read_json(layout.selected(seed))
    cands = scores.get("candidates", [])
    lines = [f"**repeat seed {seed}**", ""] if title else []
    lines += ["| " + " | ".join(cols) + " | selected |", "|---" * (len(cols) + 1) + "|"]
    for c in cands:
        fkey = fraction_key(c.get("fraction"))
        chosen = selected.get(fkey, {}).get("checkpoint") == c.get("checkpoint")
        cells = [
            f"{c.get(k):.4g}" if isinstance(c.get(k), float) else str(c.get(k, "—")) for k in cols
        ]
        lines.append("| " + " | ".join(cells) + f" | {'**yes**' if chosen else ''} |")
    lines.append("")
    for fkey, sel in selected.items():
        if isinstance(sel, dict) and sel.get("reason"):
            lines.append(f"- {float(fkey) * 100:g} %: {sel['reason']}")
    return lines + [""]


def write_report(run_dir: Path, scale: str = "custom") -> Path:
    """Write results.json, results_per_seed.json, report.md and figures/ for a finished run."""
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    figures = layout.figures_dir
    figures.mkdir(exist_ok=True)
    results, per_seed, std = collect_results(run_dir, scale)
    layout.results.write_text(json.dumps(results, indent=2))
    layout.results_per_seed.write_text(json.dumps({"per_seed": per_seed, "std": std}, indent=2))

    seeds = run_plan(layout)["seeds"]
    budget = ("same optimiser steps for every variant of a subset (augmented sets sampled down to the original "
              "size per epoch)" if results["budget"] == "steps" else "the paper's fixed epochs over each training set")
    lines = [
        f"# LcGAN experiment report — scale `{scale}`",
        "",
        f"Run dir: `{run_dir}` · image size {results['image_size']}² · split seed {results['seed']} · "
        f"{len(seeds)} repeat(s), seeds {', '.join(str(s) for s in seeds)} (each repeat: its own GAN, selection, "
        f"synthetic set and segmenters) · training budget: {budget}.",
        "",
        "Every number below comes from this run's files; the paper's published value follows each of ours "
        "(`ours / paper`) where the paper has one. The paper used ~2,100 real patients at 256²; "
        "small-scale runs are not expected to match it in absolute terms.",
        "",
    ]
    lines += _tables(results, std)
    _fig7(results, figures / "fig7_improvement.png")
    lines += ["## Fig. 7 analogue — improvement over the original training set", "",
              "![improvement](figures/fig7_improvement.png)", ""]
    lines += ["## Samples — mask | real | synthetic (selected generator)", ""]
    for fkey, block in results["fractions"].items():
        name = f"samples_frac={fkey}.png"
        if _sample_grid(layout, float(fkey), seeds[0], figures / name):
            lines += [f"**{subset_title(fkey, block)}** (repeat seed {seeds[0]})", "", f"![samples {fkey}](figures/{name})", ""]
    lines += _audit_section(layout, results, seeds, figures)
    lines += _selection_table(layout, seeds)
    state_file = layout.state
    state = _read_json(state_file).get("stages", {}) if state_file.exists() else {}
    if state:
        lines += ["## Run time per stage", "", "| stage | status | wall (s) |", "|---|---|---|"]
        lines += [f"| {k} | {v['status']} | {v['wall_s']:.1f} |" for k, v in state.items()]
        lines.append("")
    path = layout.report
    path.write_text("\n".join(lines))
    return path
