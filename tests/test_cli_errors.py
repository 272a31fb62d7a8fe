"""Errors for people: a known error prints `error: <file>: <defect>` + `hint: …` and exits 1."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from data_helpers import bhsd_cases, head_volume, write_bhsd, write_nifti
from hydra.errors import InstantiationException

from lcgan_lightning.cli.errors import known_error, report_errors
from lcgan_lightning.data.slices import SliceSet
from lcgan_lightning.data.synthetic_set import write_synthetic_set
from lcgan_lightning.data.validation import DatasetError
from lcgan_lightning.errors import CheckpointNotFoundError, ConfigError


def _raiser(err):
    @report_errors
    def task(cfg):
        raise err

    return task


def test_known_error_prints_two_lines(capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    wrapped = InstantiationException("Error in call to target 'x':\nDatasetError(...)")
    wrapped.__cause__ = DatasetError("/d/a.nii.gz: affine mismatch: label\n[[1 0]\n [0 1]]\nvs image")
    with pytest.raises(SystemExit) as info:
        _raiser(wrapped)(None)
    assert info.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "error: /d/a.nii.gz: affine mismatch: label [[1 0] [0 1]] vs image"
    assert lines[1].startswith("hint: `lcgan-inspect") and len(lines) == 2


def test_unknown_errors_and_full_error_keep_the_traceback(monkeypatch):
    with pytest.raises(KeyError):
        _raiser(KeyError("x"))(None)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match="model.norm"):
        _raiser(ConfigError("model.norm='x': must be one of"))(None)


def test_known_error_walks_causes():
    err = RuntimeError("outer")
    err.__cause__ = CheckpointNotFoundError("/x.ckpt: checkpoint not found")
    assert isinstance(known_error(err), CheckpointNotFoundError)
    assert known_error(ValueError("plain")) is None
    try:
        open("/definitely/not/here.txt")
    except FileNotFoundError as e:
        assert known_error(e) is e


def _run(tmp_path, module, *args, run="run"):
    cmd = [sys.executable, "-m", f"lcgan_lightning.cli.{module}", f"paths.root_dir={tmp_path}",
           f"hydra.run.dir={tmp_path}/{run}", *args]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}  # conftest sets it
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 1, out.stderr[-3000:]
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    hints = [ln for ln in out.stderr.splitlines() if ln.startswith("hint: ")]
    assert len(errors) == 1 and len(hints) == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return errors[0]


def _stale_set(tmp_path, root):
    """A synthetic set for slices that are not the training slices of `root`."""
    n = 3
    source = SliceSet.from_arrays(np.zeros((n, 32, 32), np.float16), np.ones((n, 32, 32), np.uint8),
                                  ["ID_zz"] * n, ["ID_zz_ID_1"] * n, list(range(n)))
    return write_synthetic_set(tmp_path / "syn", np.zeros((n, 32, 32)), np.ones((n, 32, 32)), source)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dataset", "config", "checkpoint", "weights", "synthetic"])
def test_each_error_class_is_one_line_naming_the_file(tmp_path, kind):
    root = write_bhsd(tmp_path / "bhsd", bhsd_cases(6))
    data = ["data=bhsd", f"data.root={root}", "data.image_size=32"]
    if kind == "dataset":
        _, label = head_volume([(2, 1)], shape=(32, 30, 6))
        bad = write_nifti(sorted((root / "labelsTr").iterdir())[1], label, dtype=np.uint8)
        line = _run(tmp_path, "inspect", *data)
        assert line.startswith(f"error: {bad}: shape mismatch")
        # several defective cases: one line naming them all, the full list in the run dir
        orphan = sorted((root / "imagesTr").iterdir())[3]
        sorted((root / "labelsTr").iterdir())[3].unlink()
        line = _run(tmp_path, "inspect", *data, run="run2")
        assert line.startswith(f"error: {root}: 2 defective cases: ")
        assert f"{bad}: shape mismatch" in line and f"{orphan}: image without label" in line
        assert len(json.loads((tmp_path / "run2" / "defects.json").read_text())) == 2
    elif kind == "config":
        line = _run(tmp_path, "inspect", *data, "data.fraction=0")
        assert line.startswith("error: data.fraction=0")
    elif kind == "checkpoint":
        line = _run(tmp_path, "train", *data, "model=fcn8s", "logger=none", "print_config=false",
                    f"ckpt_path={tmp_path}/nope.ckpt")
        assert line == f"error: {tmp_path}/nope.ckpt: checkpoint not found"
    elif kind == "weights":
        line = _run(tmp_path, "train", *data, "model=fcn8s", "model.width=1.0", "logger=none",
                    "print_config=false", f"model.pretrained_vgg16={tmp_path}/vgg.pth")
        assert line.startswith(f"error: {tmp_path}/vgg.pth: pretrained VGG-16 state dict not found")
    else:
        syn = _stale_set(tmp_path, root)
        line = _run(tmp_path, "inspect", *data, "data.augment=gan", f"data.synthetic_dir={syn}")
        assert line.startswith(f"error: {syn / 'manifest.json'}: synthetic set does not cover exactly")
