"""The data config every stage of one run reads: frozen under the run dir as the option `data=pipeline`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from lcgan_lightning.layout import RunLayout
from lcgan_lightning.pipeline.planning import subset_counts


def write_data_config(cfg: DictConfig, layout: RunLayout) -> Path:
    """Freeze the run's data config as `<run>/conf/data/pipeline.yaml`.

    Every app gets `hydra.searchpath=[file://<run>/conf] data=pipeline`, so all stages read the same
    data with the same split seed, whatever the training seed (with `split_per_repeat`, repeat S
    reads its own split, `splits/seed=S.json`).
    """
    path = layout.data_config
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cast(dict[str, Any], OmegaConf.to_container(cfg.data, resolve=True))
    for key in ("root", "cache_dir"):  # jobs may run in another cwd (Ray, SLURM)
        if data.get(key) is not None:
            data[key] = str(Path(data[key]).resolve())
    data["sample_seed"] = "${seed}"  # sampling follows each job's seed
    if cfg.get("split_per_repeat"):  # ... and so does the split: repeat S reads splits/seed=S.json
        data["seed"] = "${seed}"
        data["splits_path"] = RunLayout(layout.root.resolve()).split_pattern
    else:  # split seed frozen, whatever the training seed
        data["splits_path"] = str(layout.splits.resolve())
    if counts := subset_counts(cfg):
        data["subset_counts"] = counts
    else:
        data["subsets"] = [float(f) for f in cfg.fractions]
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(data)))
    return path
