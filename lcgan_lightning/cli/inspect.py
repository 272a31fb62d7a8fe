"""`lcgan-inspect`: what a dataset holds and how the configured seed splits it, before any training.

    lcgan-inspect data=bhsd data.root=/data/bhsd
    lcgan-inspect data=ctich data.root=/data/ct-ich
    lcgan-inspect                      # the built-in phantom (generated on first use)

Prints a summary and writes `inspect.json` (schema in the README) and `splits.json` into the run dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from lcgan_lightning.cli.errors import report_errors
from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.data.splits import subset_label, training_patients
from lcgan_lightning.paths import CONF_DIR

MAX_SKIPPED_SHOWN = 20


def inspect_data(data_cfg: DictConfig, run_dir: str | Path, console: Console | None = None) -> dict[str, Any]:
    """Build the datamodule from `data_cfg`, run every check, write inspect.json, print a summary."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dm = instantiate(data_cfg)
    dm.prepare_data()
    dm.setup()
    info = dm.summary()
    (run_dir / "inspect.json").write_text(json.dumps(info, indent=2))
    print_summary(dm, info, run_dir, console or Console())
    return info


def print_summary(dm: Any, info: dict[str, Any], run_dir: Path, console: Console) -> None:
    """Rich tables: counts, pixels per class, splits, skipped files."""
    console.rule(f"[bold]{dm.layout}[/] dataset at {dm.root}")
    counts = Table(show_header=False, box=None)
    for key in ("patients", "slices", "lesion_slices"):
        counts.add_row(key, str(info[key]))
    counts.add_row("image size", f"{dm.image_size}²")
    counts.add_row("volumes", str(len(set(dm.slices.volumes.tolist()))))
    counts.add_row("skipped", str(len(info["skipped"])))
    counts.add_row("kept with a note", str(len(dm.slices.notes)))
    console.print(counts)

    pixels = Table(title="lesion pixels per class (at image size)")
    total = sum(info["pixels_per_class"].values()) or 1
    slices_with = (dm.slices.pixel_counts()[:, 1:] > 0).sum(axis=0)
    for col in ("class", "pixels", "share", "slices", "patients"):
        pixels.add_column(col, justify="right" if col != "class" else "left")
    per_patient = dm.slices.classes_per_patient()
    for i, name in enumerate(LESION_CLASSES):
        n = info["pixels_per_class"][name]
        carriers = sum(1 for cs in per_patient.values() if i + 1 in cs)
        pixels.add_row(name, str(n), f"{100 * n / total:.1f} %", str(int(slices_with[i])), str(carriers))
    console.print(pixels)

    splits = info["splits"]
    table = Table(title=f"patient split (seed {dm.seed})")
    for col in ("part", "patients", "slices", "classes"):
        table.add_column(col)
    rows = [(p, splits[p]) for p in ("train", "val", "test")]
    rows += [(f"train {subset_label(k)}", ids) for k, ids in splits["subsets"].items()]
    if dm.subset_patients is not None:
        rows.append((f"data.subset_patients {dm.subset_patients}", training_patients(splits, patients=dm.subset_patients)))
    elif dm.fraction != 1.0:
        rows.append((f"data.fraction {dm.fraction:g}", training_patients(splits, dm.fraction)))
    for name, ids in rows:
        classes = sorted({c for p in ids for c in per_patient[p]})
        n_slices = int(sum(int((dm.slices.patients == p).sum()) for p in ids))
        table.add_row(name, str(len(ids)), str(n_slices), " ".join(LESION_CLASSES[c - 1] for c in classes))
    console.print(table)

    if info["skipped"]:
        skipped = Table(title=f"skipped ({len(info['skipped'])})")
        skipped.add_column("file")
        skipped.add_column("reason")
        for item in info["skipped"][:MAX_SKIPPED_SHOWN]:
            skipped.add_row(item["file"], item["reason"])
        console.print(skipped)
        if len(info["skipped"]) > MAX_SKIPPED_SHOWN:
            console.print(f"... {len(info['skipped']) - MAX_SKIPPED_SHOWN} more in inspect.json")
    console.print(f"wrote {run_dir / 'inspect.json'}")


@hydra.main(config_path=str(CONF_DIR), config_name="inspect", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    inspect_data(cfg.data, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
