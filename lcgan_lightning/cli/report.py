"""`lcgan-report run_dir=D`: tables, figures and results.json of a pipeline run dir."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from lcgan_lightning.cli.errors import report_errors
from lcgan_lightning.paths import CONF_DIR
from lcgan_lightning.report import write_report


@hydra.main(config_path=str(CONF_DIR), config_name="report", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    """Write the report of `run_dir` and print its path."""
    run_dir = Path(cfg.run_dir)
    scale = cfg.scale
    if scale is None and (run_dir / "pipeline.yaml").exists():
        run_cfg = OmegaConf.load(run_dir / "pipeline.yaml")
        scale = run_cfg.get("scale") if isinstance(run_cfg, DictConfig) else None
    print(write_report(run_dir, scale=scale or "custom").resolve())
    if cfg.get("wandb"):
        from lcgan_lightning.report.wandb_run import log_report_run

        print(f"W&B report run: {log_report_run(run_dir)}")


if __name__ == "__main__":
    main()
