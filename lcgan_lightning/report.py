"""Report of one pipeline run: paper Tables 1–3 and Fig. 7 from this run's files only.

Reads (paths from `RunLayout`): the judge's and every segmentation run's test_metrics.json,
selected.json, scores.json, pipeline_state.json and the synthetic sets' sample grids; writes
results.json (schema in the README), results_per_seed.json, report.md and figures/*.png.
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.layout import TEST_METRICS, RunLayout, fraction_key
from lcgan_lightning.synthesize import SAMPLES

# results.json names of the augmentation variants (config value -> key)
VARIANTS: dict[str, str] = {"none": "original", "gan": "gan", "traditional": "traditional", "both": "both"}
VARIANT_LABELS: dict[str, str] = {
    "original": "Selected (original)",
    "gan": "+ GAN generated",
    "traditional": "+ traditional aug.",
    "both": "+ both",
}
METRIC_KEYS = ("dsc", "precision", "recall")

# The paper's published numbers (Tables 1–3), for side-by-side comparison only.
PAPER: dict[str, Any] = {
    "full": {
        "dsc": 0.628,
        "precision": 0.850,
        "recall": 0.802,
        "per_class_dsc": {"IPH": 0.842, "IVH": 0.760, "SAH": 0.657, "EDH": 0.872, "SDH": 0.817},
    },
    "fractions": {
        "0.025": {
            "original": {"dsc": 0.244, "precision": 0.408, "recall": 0.360,
                         "per_class_dsc": {"IPH": 0.772, "IVH": 0.186, "SAH": 0.246, "EDH": 0.424, "SDH": 0.558}},
            "gan": {"dsc": 0.323, "precision": 0.519, "recall": 0.479,
                    "per_class_dsc": {"IPH": 0.773, "IVH": 0.513, "SAH": 0.456, "EDH": 0.672, "SDH": 0.602}},
            "traditional": {"dsc": 0.352, "precision": 0.549, "recall": 0.502,
                            "per_class_dsc": {"IPH": 0.782, "IVH": 0.553, "SAH": 0.481, "EDH": 0.612, "SDH": 0.635}},
            "both": {"dsc": 0.371, "precision": 0.607, "recall": 0.540,
                     "per_class_dsc": {"IPH": 0.777, "IVH": 0.517, "SAH": 0.529, "EDH": 0.708, "SDH": 0.642}},
        },
        "0.1": {
            "original": {"dsc": 0.478, "precision": 0.695, "recall": 0.681,
                         "per_class_dsc": {"IPH": 0.809, "IVH": 0.682, "SAH": 0.629, "EDH": 0.716, "SDH": 0.690}},
            "gan": {"dsc": 0.489, "precision": 0.719, "recall": 0.684,
                    "per_class_dsc": {"IPH": 0.816, "IVH": 0.685, "SAH": 0.630, "EDH": 0.738, "SDH": 0.691}},
            "traditional": {"dsc": 0.529, "precision": 0.762, "recall": 0.724,
                            "per_class_dsc": {"IPH": 0.818, "IVH": 0.702, "SAH": 0.645, "EDH": 0.768, "SDH": 0.737}},
            "both": {"dsc": 0.538, "precision": 0.766, "recall": 0.737,
                     "per_class_dsc": {"IPH": 0.821, "IVH": 0.715, "SAH": 0.636, "EDH": 0.775, "SDH": 0.752}},
        },
        "0.25": {
            "original": {"dsc": 0.565, "precision": 0.809, "recall": 0.747,
                         "per_class_dsc": {"IPH": 0.829, "IVH": 0.737, "SAH": 0.654, "EDH": 0.811, "SDH": 0.767}},
            "gan": {"dsc": 0.571, "precision": 0.810, "recall": 0.757,
                    "per_class_dsc": {"IPH": 0.832, "IVH": 0.748, "SAH": 0.652, "EDH": 0.832, "SDH": 0.766}},
            "traditional": {"dsc": 0.580, "precision": 0.834, "recall": 0.763,
                            "per_class_dsc": {"IPH": 0.828, "IVH": 0.737, "SAH": 0.652, "EDH": 0.837, "SDH": 0.781}},
            "both": {"dsc": 0.581, "precision": 0.844, "recall": 0.777,
                     "per_class_dsc": {"IPH": 0.832, "IVH": 0.750, "SAH": 0.653, "EDH": 0.837, "SDH": 0.780}},
        },
    },
}


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _metrics(raw: dict[str, Any]) -> dict[str, Any]:
    """The METRICS block of results.json (README) from a test_metrics.json (extra keys dropped).

    A class absent from both truth and prediction on the whole test set has no DSC: null.
    """
    return {
        **{k: float(raw[k]) for k in METRIC_KEYS},
        "per_class_dsc": {c: _float_or_none(raw["per_class_dsc"].get(c)) for c in LESION_CLASSES},
    }


def _aggregate(runs: list[dict[str, Any]], reduce) -> dict[str, Any]:
    """Reduce each figure over seeds, ignoring the runs where it is null."""

    def over_runs(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return reduce(present) if present else None

    return {
        **{k: over_runs([r[k] for r in runs]) for k in METRIC_KEYS},
        "per_class_dsc": {c: over_runs([r["per_class_dsc"][c] for r in runs]) for c in LESION_CLASSES},
    }


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def collect_results(run_dir: Path, scale: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(results.json content, per-seed metrics, std over seeds) from the run dir's files.

    Reads exactly the runs `pipeline.yaml` configured (fractions × augments × seeds); a missing
    `test_metrics.json` is an error naming every missing file, never a silently shorter table.
    """
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    selected = _read_json(layout.selected)
    pipeline_cfg = _load_yaml(layout.pipeline_config)
    results: dict[str, Any] = {
        "scale": scale,
        "image_size": int(pipeline_cfg["data"]["image_size"]),
        "seed": int(pipeline_cfg["seed"]),
        "full": _metrics(_read_json(layout.judge_dir / TEST_METRICS)),
        "fractions": {},
    }
    per_seed: dict[str, Any] = {}
    std: dict[str, Any] = {}
    missing: list[str] = []
    for fraction in (float(f) for f in pipeline_cfg["fractions"]):
        fkey = fraction_key(fraction)
        block: dict[str, Any] = {}
        for aug in pipeline_cfg["augments"]:
            name = VARIANTS[aug]
            runs = {}
            for seed in pipeline_cfg["seeds"]:
                path = layout.seg_dir(fraction, aug, seed) / TEST_METRICS
                if path.exists():
                    runs[f"seed={seed}"] = _metrics(_read_json(path))
                else:
                    missing.append(str(path.relative_to(run_dir)))
            if runs:
                block[name] = _aggregate(list(runs.values()), statistics.fmean)
                per_seed.setdefault(fkey, {})[name] = runs
                std.setdefault(fkey, {})[name] = _aggregate(list(runs.values()), _std)
        sel = selected[fkey]
        block["selected"] = {
            "epochs": int(sel["epochs"]),
            "fcn_score": float(sel["fcn_score"]),
            "sharpness": float(sel["sharpness"]),
            # null when the realism classifier could not be trained (scores.json says why)
            "fooled": _float_or_none(sel["fooled"]),
        }
        results["fractions"][fkey] = block
    if missing:
        raise FileNotFoundError(f"{run_dir}: segmentation results missing:\n  " + "\n  ".join(missing))
    return results, per_seed, std


def _load_yaml(path: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # type: ignore[return-value]


def _fmt(mean: float | None, sd: float | None = None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.3f}" if not sd else f"{mean:.3f} ± {sd:.3f}"


def _tables(results: dict[str, Any], std: dict[str, Any]) -> list[str]:
    fracs = list(results["fractions"])
    head = "| | " + " | ".join(f"{float(f) * 100:g} % (ours / paper)" for f in fracs) + " |"
    sep = "|---" * (len(fracs) + 1) + "|"
    lines = ["## Table 1 — DSC (mean over test images, background ignored)", "", head, sep]

    def row(label: str, key: str, metric: str) -> str:
        cells = []
        for f in fracs:
            ours = results["fractions"][f].get(key)
            paper = PAPER["fractions"].get(f, {}).get(key, {}).get(metric)
            sd = std.get(f, {}).get(key, {}).get(metric)
            cell = _fmt(ours[metric], sd) if ours else "—"
            cells.append(f"{cell} / {paper:.3f}" if paper is not None else cell)
        return f"| {label} | " + " | ".join(cells) + " |"

    for key, label in VARIANT_LABELS.items():
        lines.append(row(label, key, "dsc"))
    lines += [f"| Entire dataset (100 %) | {results['full']['dsc']:.3f} / {PAPER['full']['dsc']:.3f} |", ""]

    lines += ["## Table 2 — detection precision and recall (test set)", ""]
    for metric in ("precision", "recall"):
        lines += [f"**{metric}**", "", head, sep]
        for key, label in VARIANT_LABELS.items():
            lines.append(row(label, key, metric))
        lines += [
            f"| Entire dataset (100 %) | {results['full'][metric]:.3f} / {PAPER['full'][metric]:.3f} |",
            "",
        ]

    lines += ["## Table 3 — DSC per class (ours / paper)", ""]
    lines += ["| training data | " + " | ".join(LESION_CLASSES) + " |", "|---" * (len(LESION_CLASSES) + 1) + "|"]
    for f in fracs:
        for key, label in VARIANT_LABELS.items():
            ours = results["fractions"][f].get(key)
            if not ours:
                continue
            paper = PAPER["fractions"].get(f, {}).get(key, {}).get("per_class_dsc", {})
            cells = [
                f"{_fmt(ours['per_class_dsc'][c])} / {paper[c]:.3f}" if c in paper else _fmt(ours["per_class_dsc"][c])
                for c in LESION_CLASSES
            ]
            lines.append(f"| {float(f) * 100:g} % {label} | " + " | ".join(cells) + " |")
    full = results["full"]["per_class_dsc"]
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
    for ax, metric in zip(axes, METRIC_KEYS, strict=True):
        for key in ("gan", "traditional", "both"):
            ys = [
                results["fractions"][f][key][metric] - results["fractions"][f]["original"][metric]
                if key in results["fractions"][f] and "original" in results["fractions"][f]
                else np.nan
                for f in fracs
            ]
            ax.plot(x, ys, marker="o", label=VARIANT_LABELS[key])
        paper = [
            PAPER["fractions"][f]["both"][metric] - PAPER["fractions"][f]["original"][metric]
            if f in PAPER["fractions"]
            else np.nan
            for f in fracs
        ]
        ax.plot(x, paper, "k--", marker="x", label="paper, + both")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.set_xlabel("training patients (%)")
        ax.set_title(f"{metric.upper() if metric == 'dsc' else metric}: change vs original")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sample_grid(layout: RunLayout, fraction: float, path: Path) -> bool:
    """Copy the synthetic set's mask | real | synthetic grid (drawn by the synthesize stage) to `path`."""
    grid = layout.synthetic_dir(fraction) / SAMPLES
    if not grid.is_file():
        return False
    shutil.copyfile(grid, path)
    return True


def _selection_table(layout: RunLayout) -> list[str]:
    scores = _read_json(layout.scores)
    selected = _read_json(layout.selected)
    cands = scores.get("candidates", [])
    cols = ["fraction", "epochs", "fcn_score", "sharpness", "fft_mean", "fooled_0.1", "fooled_0.5"]
    lines = ["## Generator selection", ""]
    conventions = scores.get("conventions")
    if isinstance(conventions, dict):
        lines += [f"- **{k}**: {v}" for k, v in conventions.items()] + [""]
    elif conventions:
        lines += [str(conventions), ""]
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

    seeds = sorted({s for f in per_seed.values() for v in f.values() for s in v})
    lines = [
        f"# LcGAN experiment report — scale `{scale}`",
        "",
        f"Run dir: `{run_dir}` · image size {results['image_size']}² · split seed {results['seed']} · "
        f"segmentation seeds: {', '.join(s.split('=')[1] for s in seeds) or '—'}"
        + (" (cells: mean ± std over seeds)" if len(seeds) > 1 else ""),
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
    for fkey in results["fractions"]:
        name = f"samples_frac={fkey}.png"
        if _sample_grid(layout, float(fkey), figures / name):
            lines += [f"**{float(fkey) * 100:g} %**", "", f"![samples {fkey}](figures/{name})", ""]
    lines += _selection_table(layout)
    state_file = layout.state
    state = _read_json(state_file).get("stages", {}) if state_file.exists() else {}
    if state:
        lines += ["## Run time per stage", "", "| stage | status | wall (s) |", "|---|---|---|"]
        lines += [f"| {k} | {v['status']} | {v['wall_s']:.1f} |" for k, v in state.items()]
        lines.append("")
    path = layout.report
    path.write_text("\n".join(lines))
    return path
