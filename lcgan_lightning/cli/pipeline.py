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
from lcgan_lightning.pipeline import PipelineError, pipeline_console, print_summary, run_pipeline
from lcgan_lightning.quiet import console_log_level, quiet_library_noise

log = logging.getLogger(__name__)
register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="pipeline", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    """Run or resume every stage; ends with the summary and where the report is."""
    quiet_library_noise()
    if not cfg.get("verbose"):  # the console shows the progress; pipeline.log keeps every record
        console_log_level(logging.WARNING)
    console = pipeline_console(cfg)
    try:
        ctx = run_pipeline(cfg, Path(cfg.paths.output_dir), console=console)
    except PipelineError as err:  # printed in the console's style (the failed job's log tail is above)
        log.info("stopped: %s", err)
        console.error(str(err))
        sys.exit(1)
    print_summary(ctx)


if __name__ == "__main__":
    main()
