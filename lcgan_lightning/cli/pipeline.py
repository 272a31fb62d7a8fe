"""`lcgan-pipeline`: the whole experiment in one command (see lcgan_lightning.pipeline)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from lcgan_lightning.cli.errors import report_errors
from lcgan_lightning.config import register_resolvers
from lcgan_lightning.paths import CONF_DIR
from lcgan_lightning.pipeline import Pipeline

log = logging.getLogger(__name__)
register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="pipeline", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    """Run or resume every stage; prints where the report is."""
    pipeline = Pipeline(cfg, Path(cfg.paths.output_dir))
    report = pipeline.run()  # a PipelineError is reported by report_errors
    if pipeline.failures:
        log.error("finished with failed jobs:\n  %s", "\n  ".join(pipeline.failures))
        sys.exit(1)
    print(f"\nReport: {report.resolve()}")


if __name__ == "__main__":
    main()
