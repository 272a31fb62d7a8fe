"""Shared test set-up: no network, no W&B account, small CPU footprint."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # tiny tensors: one thread is faster than two here


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    yield


# The longest files start first, so that `make test`'s workers (--dist loadfile: a file stays on one
# worker) finish together instead of one of them running a long file at the end. Seconds per file on the
# 2-core CPU, 2026-12-07; a file not listed runs after these, in collection order.
LONGEST_FIRST = (
    "test_pipeline_generators_e2e.py",  # 186 s: a tiny pipeline per generator family, then report.families
    "test_pipeline_e2e.py",  # ~140 s: one tiny real pipeline
    "test_ddp.py",  # ~80 s: 3 generator families and 2 segmenters under 2-process DDP
    "test_pipeline_resume.py",  # ~60 s
    "test_resume.py",  # ~50 s
    "test_sweep_gan.py",  # ~45 s
    "test_cli_errors.py",  # ~40 s
    "test_compare.py",  # ~25 s
    "test_hparams_search.py",  # ~20 s
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
