"""`lcgan-train`: train one model (`model=lcgan|fcn8s|basicunet`) on one data fraction.

Everything comes from `conf/train.yaml` and its groups; see docs/training.md for examples. The work is
done by :mod:`lcgan_lightning.training`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from lcgan_lightning.cli.errors import report_errors
from lcgan_lightning.config import register_resolvers
from lcgan_lightning.paths import CONF_DIR
from lcgan_lightning.quiet import quiet_library_noise
from lcgan_lightning.training import run_job

register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns `optimized_metric` (if configured) for hyper-parameter sweepers."""
    quiet_library_noise()
    summary = run_job(cfg)
    key = cfg.get("optimized_metric")
    if summary is None:  # failed under catch_errors: a sweeper scores it instead of stopping
        return cfg.get("failed_metric_value") if key else None
    return summary["metrics"].get(key) if key else None


if __name__ == "__main__":
    main()
