"""`lcgan-phantom`: write the built-in head-CT phantom (BHSD / nnU-Net layout).

    lcgan-phantom out_dir=data/phantom num_patients=40 seed=0 image_size=256 [num_slices=24]
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

import hydra
from omegaconf import DictConfig

from lcgan_lightning.cli.errors import report_errors
from lcgan_lightning.data.phantom import generate_phantom
from lcgan_lightning.errors import ConfigError, UserError
from lcgan_lightning.paths import CONF_DIR

log = logging.getLogger(__name__)


@hydra.main(config_path=str(CONF_DIR), config_name="phantom", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    """Generate the phantom and print where it is and what it holds."""
    out = Path(cfg.out_dir)
    start = time.perf_counter()
    try:
        paths = generate_phantom(
            out,
            num_patients=int(cfg.num_patients),
            seed=int(cfg.seed),
            image_size=int(cfg.image_size),
            num_slices=int(cfg.num_slices),
            overwrite=bool(cfg.overwrite),
            workers=cfg.get("workers"),
        )
    except FileExistsError as err:
        raise UserError(str(err), hint="choose another out_dir or set overwrite=true") from err
    except ValueError as err:
        raise ConfigError(str(err), hint="num_patients >= 1, image_size >= 16, num_slices >= 2") from err
    seconds = time.perf_counter() - start
    info = json.loads((out / "phantom.json").read_text())
    per_class = Counter(c for vol in info["volumes"] for c in vol["classes"])
    log.info(
        "wrote %d volumes of %d patients (%d x %d x %d) to %s in %.1f s; volumes per class: %s",
        len(paths), cfg.num_patients, cfg.image_size, cfg.image_size, cfg.num_slices,
        out.resolve(), seconds, dict(sorted(per_class.items())),
    )
    print(out.resolve())


if __name__ == "__main__":
    main()
