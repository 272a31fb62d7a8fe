"""`lcgan-eval`: evaluate a trained segmenter checkpoint on any dataset and split.

    lcgan-eval ckpt_path=runs/smoke/seg/frac=0.1/aug=gan/seed=42/checkpoints/last.ckpt
    lcgan-eval ckpt_path=... data=ctich data.root=/data/ct-ich split=all
    lcgan-eval ckpt_path=... data.window=subdural        # same data, another window

The work is done by :mod:`lcgan_lightning.evaluation`; outputs are listed there and in docs/metrics.md.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from lcgan_lightning.cli.errors import report_errors
from lcgan_lightning.config import register_resolvers
from lcgan_lightning.evaluation import evaluate
from lcgan_lightning.paths import CONF_DIR

register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="eval", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the DSC of the evaluated split."""
    return float(evaluate(cfg)["metrics"]["dsc"])


if __name__ == "__main__":
    main()
