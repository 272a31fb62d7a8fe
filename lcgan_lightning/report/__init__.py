"""Report of one pipeline run: paper Tables 1–3 and Fig. 7 from this run's files only.

`results` collects the numbers (results.json, results_per_seed.json), `tables` writes the markdown,
`figures` the PNGs, `wandb` the same as one W&B run. Schema of results.json: docs/pipeline.md.
"""

from __future__ import annotations

from pathlib import Path

from lcgan_lightning.atomic_io import write_json_atomic, write_text_atomic
from lcgan_lightning.generator_families import generator_note
from lcgan_lightning.layout import RunLayout
from lcgan_lightning.paper_numbers import PAPER
from lcgan_lightning.report.figures import fig7, sample_grid
from lcgan_lightning.report.results import collect_results, read_json
from lcgan_lightning.report.tables import (
    audit_section,
    inference_section,
    metric_tables,
    selection_table,
)
from lcgan_lightning.run_plan import RunPlan, subset_title

__all__ = ["PAPER", "collect_results", "write_report"]


def write_report(run_dir: Path, scale: str = "custom") -> Path:
    """Write results.json, results_per_seed.json, report.md and figures/ for a finished run."""
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    figures = layout.figures_dir
    figures.mkdir(exist_ok=True)
    results, per_seed, std = collect_results(run_dir, scale)
    write_json_atomic(layout.results, results)
    write_json_atomic(layout.results_per_seed, {"per_seed": per_seed, "std": std})

    seeds = RunPlan.load(layout.run_plan).seeds
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
    lines += inference_section(results)
    lines += metric_tables(results, std)
    fig7(results, figures / "fig7_improvement.png")
    lines += ["## Fig. 7 analogue — improvement over the original training set", "",
              "![improvement](figures/fig7_improvement.png)", ""]
    lines += [f"## Samples — mask | real | synthetic (selected generator){generator_note(results)}", ""]
    for fkey, block in results["fractions"].items():
        name = f"samples_frac={fkey}.png"
        if sample_grid(layout, float(fkey), seeds[0], figures / name):
            lines += [f"**{subset_title(fkey, block.get('patients'))}** (repeat seed {seeds[0]})", "",
                      f"![samples {fkey}](figures/{name})", ""]
    lines += audit_section(layout, results, seeds, figures)
    lines += selection_table(layout, seeds, results)
    stages = read_json(layout.state).get("stages", {}) if layout.state.exists() else {}
    if stages:
        lines += ["## Run time per stage", "", "| stage | status | wall (s) |", "|---|---|---|"]
        lines += [f"| {k} | {v['status']} | {v['wall_s']:.1f} |" for k, v in stages.items()]
        lines.append("")
    return write_text_atomic(layout.report, "\n".join(lines))
