"""`lcgan-inspect`: what a dataset holds and how the configured seed splits it, before any training.

    lcgan-inspect data=bhsd data.root=/data/bhsd
    lcgan-inspect data=ctich data.root=/data/ct-ich
    lcgan-inspect                      # the built-in phantom (generated on first use)

Prints a summary and writes `inspect.json` (schema in docs/data.md) and `splits.json` into the run dir.
Every case is checked: the defective ones are listed all at once (table + `defects` in inspect.json),
and the command then exits 1 unless `data.on_defect=skip` (training would stop the same way).
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
from lcgan_lightning.data.validation import DatasetError, defects_error
from lcgan_lightning.paths import CONF_DIR

MAX_SKIPPED_SHOWN = 20


def inspect_data(data_cfg: DictConfig, run_dir: str | Path, console: Console | None = None) -> dict[str, Any]:
    """Build the datamodule from `data_cfg`, run every check on every case, write inspect.json,
    print a summary. Defective cases are left out of the summary and listed in its "defects"."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    console = console or Console()
    dm = instantiate(data_cfg, on_defect="skip")  # collect every defect; the caller decides
    try:
        dm.prepare_data()
    except DatasetError as err:
        print_defects(err.defects, console)  # no healthy case at all
        raise
    dm.setup()
    info = dm.summary()
    _write_json(run_dir / "inspect.json", info)
    print_summary(dm, info, run_dir, console)
    return info


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def print_defects(defects: list[dict], console: Console) -> None:
    """Every defective case in one table."""
    if not defects:
        return
    table = Table(title=f"[bold red]defective cases ({len(defects)})[/]")
    table.add_column("file", overflow="fold")
    table.add_column("defect", overflow="fold")
    for item in defects:
        table.add_row(item["file"], item["defect"])
    console.print(table)


def print_summary(dm: Any, info: dict[str, Any], run_dir: Path, console: Console) -> None:
    """Rich tables: counts, pixels per class, splits, skipped files."""
    console.rule(f"[bold]{dm.dataset_format}[/] dataset at {dm.root}")
    counts = Table(show_header=False, box=None)
    for key in ("patients", "slices", "lesion_slices"):
        counts.add_row(key, str(info[key]))
    counts.add_row("image size", f"{dm.image_size}²")
    counts.add_row("volumes", str(len(set(dm.slices.volumes.tolist()))))
    counts.add_row("skipped", str(len(info["skipped"])))
    counts.add_row("defective cases", str(len(info["defects"])))
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
    print_defects(info["defects"], console)
    console.print(f"wrote {run_dir / 'inspect.json'}")


@hydra.main(config_path=str(CONF_DIR), config_name="inspect", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    """Hydra entry point; exits 1 (listing every defect) when training would stop on them."""
    info = inspect_data(cfg.data, HydraConfig.get().runtime.output_dir)
    if info["defects"] and cfg.data.get("on_defect", "error") == "error":
        err = defects_error(info["defects"], cfg.data.root)
        err.hint = "the table above and inspect.json list every defect; data.on_defect=skip trains on the healthy cases"
        raise err


if __name__ == "__main__":
    main()
