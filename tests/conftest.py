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
