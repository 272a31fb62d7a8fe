"""The markdown of a run's report: Tables 1-3 beside the paper's numbers, the audit and selection tables."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lcgan_lightning.comparison import fmt_change
from lcgan_lightning.constants import LESION_CLASSES, segmenter_name
from lcgan_lightning.generator_families import generator_note
from lcgan_lightning.layout import RunLayout, fraction_key
from lcgan_lightning.paper_numbers import PAPER
from lcgan_lightning.report.results import read_json
from lcgan_lightning.run_plan import subset_title
from lcgan_lightning.variants import AUGMENTS, Variant, row_label, variants_in

AUDIT_COLUMNS = {  # audit_summary key -> column title (report.results.AUDIT_KEYS)
    "copy_rate_feature": "copy rate (cosine)",
    "copy_rate_pixel": "copy rate (pixel L2)",
    "fid": "FID (judge)",
    "mifid": "MiFID",
    "precision": "precision",
    "recall": "recall",
    "diversity_ssim": "diversity SSIM",
}


def table_variants(results: dict[str, Any]) -> list[Variant]:
    """Rows of Tables 1-3: the paper's variants always, then every other variant the run has."""
    keys = {k for block in results["fractions"].values() for k in block if block[k]}
    keys |= {a.key for a in AUGMENTS.values() if a.in_paper}
    return variants_in(keys)


def fmt(mean: float | None, sd: float | None = None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.3f}" if not sd else f"{mean:.3f} ± {sd:.3f}"


def metric_tables(results: dict[str, Any], std: dict[str, Any]) -> list[str]:
    fracs = list(results["fractions"])
    titles = [subset_title(f, results["fractions"][f].get("patients")) for f in fracs]
    head = "| | " + " | ".join(f"{t} (ours / paper)" for t in titles) + " |"
    sep = "|---" * (len(fracs) + 1) + "|"
    spread = "mean ± std over repeats" if results.get("repeats", 1) > 1 else "one repeat"
    if results.get("split_per_repeat"):
        spread += " (each repeat with its own patient split and judge)"
    level = results["statistics"]["level"]
    change = (f"Under each variant: Δ vs original [{level * 100:g} % CI] and the verdict (better / no detectable change / "
              "worse; '80 % power at ±x': x is the smallest change this comparison detects 4 times in 5), then Holm's "
              "verdict where it differs (family: this table). Method and calibration: above Table 1.")

    def row(label: str, key: str, metric: str) -> list[str]:
        cells, changes = [], []
        for f in fracs:
            ours = results["fractions"][f].get(key)
            paper = PAPER["fractions"].get(f, {}).get(key, {}).get(metric)
            sd = std.get(f, {}).get(key, {}).get(metric)
            cell = fmt(ours[metric], sd) if ours else "—"
            cells.append(f"{cell} / {paper:.3f}" if paper is not None else cell)
            changes.append(fmt_change((ours or {}).get("vs_original", {}).get(metric)))
        out = [f"| {label} | " + " | ".join(cells) + " |"]
        if key != "original" and any(results["fractions"][f].get(key) for f in fracs):
            out.append("| ↳ Δ vs original | " + " | ".join(changes) + " |")
        vs_gan = [(results["fractions"][f].get(key) or {}).get("vs_gan", {}).get(metric) for f in fracs]
        if any(vs_gan):  # new masks / k > 1: against one synthetic CT per training mask
            out.append("| ↳ Δ vs + GAN | " + " | ".join(fmt_change(v) for v in vs_gan) + " |")
        if key == "synthetic_only":
            ratios = [(results["fractions"][f].get(key) or {}).get("tstr_trtr", {}).get(metric) for f in fracs]
            out.append("| ↳ TSTR / TRTR | " + " | ".join(fmt(r) for r in ratios) + " |")
        return out

    def table(metric: str, full_paper: float | None) -> list[str]:
        lines = [head, sep]
        for v in table_variants(results):
            lines += row(row_label(v, results), v.key, metric)
        full = fmt(results["full"][metric])
        judge = results.get("judge_model")
        other = f", {segmenter_name(judge)} judge" if judge and judge != results.get("seg_model") else ""  # not the subsets' network
        lines += [f"| Entire dataset (100 %{other}) | {full}" + (f" / {full_paper:.3f}" if full_paper else "") + " |", ""]
        return lines

    net = f" — segmenter: {segmenter_name(results.get('seg_model'))}"
    lines = [f"## Table 1 — DSC{net}", "",
             f"Strict DSC as in the paper: per test image, mean Dice over the lesion classes present in truth or "
             f"prediction (background ignored), averaged over images; {spread}. {change}", ""]
    lines += table("dsc", PAPER["full"]["dsc"])
    lines += ["**Binary lesion DSC** (any lesion vs background, per image; not in the paper)", ""]
    lines += table("binary_dsc", None)
    lines += [f"## Table 2 — detection precision and recall (test set){net}", "",
              f"Lesion components matched at Dice ≥ 0.25 (docs/metrics.md); {spread}. {change}", ""]
    for metric in ("precision", "recall"):
        lines += [f"**{metric}**", ""] + table(metric, PAPER["full"][metric])

    lines += [f"## Table 3 — DSC per class (ours / paper){net}", "",
              "Per class: mean Dice over the test images whose TRUTH holds the class (the definition that "
              "matches the paper's per-class values, which lie far above its overall DSC); mean over repeats, "
              "then the verdict of the paired comparison with original.", ""]
    lines += ["| training data | " + " | ".join(LESION_CLASSES) + " |", "|---" * (len(LESION_CLASSES) + 1) + "|"]
    for f, title in zip(fracs, titles, strict=True):
        for v in table_variants(results):
            key, label = v.key, row_label(v, results)
            ours = results["fractions"][f].get(key)
            if not ours:
                continue
            paper = PAPER["fractions"].get(f, {}).get(key, {}).get("per_class_dsc", {})
            vs = ours.get("vs_original", {}).get("per_class_dsc_present", {})
            cells = []
            for c in LESION_CLASSES:
                cell = fmt(ours["per_class_dsc_present"][c])
                cell += f" / {paper[c]:.3f}" if c in paper else ""
                cell += f" · {short_verdict(vs[c])}" if c in vs else ""
                cells.append(cell)
            lines.append(f"| {title} {label} | " + " | ".join(cells) + " |")
    full = results["full"]["per_class_dsc_present"]
    cells = [f"{fmt(full[c])} / {PAPER['full']['per_class_dsc'][c]:.3f}" for c in LESION_CLASSES]
    lines += ["| 100 % (entire dataset) | " + " | ".join(cells) + " |", ""]
    return lines


def short_verdict(result: dict[str, Any]) -> str:
    """The verdict word, with Holm's where it differs: 'better (Holm: no detectable change)'."""
    word, holm = result["verdict"], result.get("verdict_adjusted")
    return word if holm in (None, word) else f"{word} (Holm: {holm})"


def inference_section(results: dict[str, Any]) -> list[str]:
    """How the verdicts are reached, the A/A calibration and what each subset's design can detect."""
    stats, cal = results["statistics"], results.get("calibration") or {}
    repeats = results.get("repeats", 1)
    lines = ["## Verdicts — method, calibration, detectable effect", "", stats["method"], ""]
    if repeats < 2:
        lines += ["**One training run per arm: no verdict is computed** (the seed-to-seed variation of a "
                  "difference cannot be estimated from one pair of runs; a difference that size may be noise). "
                  "Run with `repeats` ≥ 3 for verdicts.", ""]
    families = stats.get("families") or {}
    if families:
        lines += ["Holm families (estimable comparisons): "
                  + "; ".join(f"{name} ({n})" for name, n in families.items()) + ".", ""]
    if cal.get("enabled"):
        rate = cal.get("rate")
        lines += [f"**A/A calibration**: the original variant trained again with seeds "
                  f"{', '.join(map(str, cal['seeds']))} and compared with the original runs (seeds "
                  f"{', '.join(map(str, cal['paired_with']))}) by the same method: {cal['called_difference']} of "
                  f"{cal['comparisons']} comparisons of identical configurations called a difference"
                  + (f" ({rate * 100:.1f} %; nominal {cal['nominal'] * 100:g} %, one-sided binomial p = {cal['p_value']:.3f})"
                     if rate is not None else "")
                  + (f"; {cal['identical']} more had arms that agree exactly (e.g. neither predicts a class) and "
                     "cannot call anything" if cal.get("identical") else "") + ".", ""]
        if cal.get("excess"):
            lines += [f"**Warning**: the A/A rate is above the nominal {cal['nominal'] * 100:g} % by more than chance "
                      "allows: treat the verdicts below as optimistic.", ""]
        rows = [(fkey, block["summary"]) for fkey, block in cal.get("per_subset", {}).items()]
        lines += ["| subset | A/A comparisons | called a difference | Δ strict DSC (A/A) |", "|---|---|---|---|"]
        for fkey, summary in rows:
            block = results["fractions"][fkey]
            lines.append(f"| {subset_title(fkey, block.get('patients'))} | {summary['comparisons']} | "
                         f"{summary['called_difference']} | {fmt_change(cal['per_subset'][fkey]['dsc'], False)} |")
        lines.append("")
    else:
        lines += [f"A/A calibration: not run ({cal.get('reason', 'calibrate=false')}).", ""]
    lines += ["| subset | SD of original's strict DSC over repeats | smallest Δ strict DSC detected (80 % power) |",
              "|---|---|---|"]
    for fkey, block in results["fractions"].items():
        d = block.get("design") or {}
        lines.append(f"| {subset_title(fkey, block.get('patients'))} | {fmt(d.get('seed_sd_dsc'))} | "
                     f"{fmt(d.get('detectable_dsc'))} |")
    return lines + [""]


def audit_section(layout: RunLayout, results: dict[str, Any], seeds: list[int], figures: Path) -> list[str]:
    """Audit table per subset and repeat, mask fidelity per class, closest-pairs figures."""
    from lcgan_lightning.audit import audit_summary

    rows = []
    for fkey, block in results["fractions"].items():
        for seed in seeds:
            path = layout.audit(float(fkey), seed)
            if path.is_file():
                rows.append((fkey, block, seed, read_json(path)))
    if not rows:
        return []
    lines = [f"## Synthetic-set audit — memorisation, fidelity, diversity{generator_note(results)}", "",
             "Each synthetic set against the real training slices of its subset, in the judge's feature space "
             "(`audit.json` beside each set; definitions in docs/audit.md). "
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
        lines.append(f"| {subset_title(fkey, block.get('patients'))} | {seed} | {s['n_synthetic']} | "
                     + " | ".join(fmt(s[k]) for k in AUDIT_COLUMNS) + f" | {who} |")
    lines += ["", "**Mask fidelity** — per class, the judge's mean Dice on the synthetic images whose mask holds "
              "the class (— where no mask holds it); higher = the lesion is drawn where the mask asks.", "",
              "| subset | seed | " + " | ".join(LESION_CLASSES) + " |", "|---" * (len(LESION_CLASSES) + 2) + "|"]
    for fkey, block, seed, audit in rows:
        fid = audit_summary(audit)["mask_fidelity"]
        lines.append(f"| {subset_title(fkey, block.get('patients'))} | {seed} | " + " | ".join(fmt(fid[c]) for c in LESION_CLASSES)
                     + " |")
    lines += ["", "**Closest synthetic / real training pairs** (feature space; top: synthetic, bottom: its nearest "
              "real slice and patient)", ""]
    for fkey, block, seed, audit in rows:
        rel = audit.get("figures", {}).get("feature")
        src = layout.synthetic_dir(float(fkey), seed) / rel if rel else None
        if seed == seeds[0] and src is not None and src.is_file():
            name = f"audit_closest_frac={fkey}.png"
            shutil.copyfile(src, figures / name)
            lines += [f"{subset_title(fkey, block.get('patients'))} (repeat seed {seed})", "", f"![closest pairs {fkey}](figures/{name})",
                      ""]
    return lines


def selection_table(layout: RunLayout, seeds: list[int], results: dict[str, Any]) -> list[str]:
    cols = ["fraction", "epochs", "fcn_score", "sharpness_ratio", "ssim", "sharpness", "fooled_0.1", "fooled_0.5"]
    lines = [f"## Generator selection{generator_note(results)}", ""]
    conventions = read_json(layout.scores(seeds[0])).get("conventions")
    if isinstance(conventions, dict):
        lines += [f"- **{k}**: {v}" for k, v in conventions.items()] + [""]
    for seed in seeds:
        lines += _selection_rows(layout, seed, cols, len(seeds) > 1)
    return lines


def _selection_rows(layout: RunLayout, seed: int, cols: list[str], title: bool) -> list[str]:
    scores = read_json(layout.scores(seed))
    selected = read_json(layout.selected(seed))
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


