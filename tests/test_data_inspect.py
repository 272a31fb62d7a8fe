"""lcgan-inspect: inspect.json has exactly the documented schema and the split the seed gives."""

import json
import subprocess
import sys

import numpy as np
import pytest
from data_helpers import BOX_VOXELS, bhsd_cases, head_volume, write_bhsd, write_ctich, write_nifti
from hydra import compose, initialize_config_dir
from rich.console import Console

from lcgan_lightning.cli.errors import known_error
from lcgan_lightning.cli.inspect import inspect_data
from lcgan_lightning.data.loading import load_slices
from lcgan_lightning.data.splits import make_splits
from lcgan_lightning.data.validation import DatasetError
from lcgan_lightning.errors import ConfigError
from lcgan_lightning.paths import CONF_DIR

CLASSES = ["IPH", "IVH", "SAH", "EDH", "SDH"]


def _cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("inspect", overrides=[f"paths.root_dir={tmp_path}",
                                             f"data.splits_path={tmp_path}/run/splits.json", *overrides])


def _check_schema(info):
    assert list(info) == ["patients", "slices", "lesion_slices", "pixels_per_class", "skipped", "defects", "splits"]
    assert all(isinstance(info[k], int) for k in ("patients", "slices", "lesion_slices"))
    assert list(info["pixels_per_class"]) == CLASSES
    assert all(isinstance(v, int) for v in info["pixels_per_class"].values())
    assert all(set(item) == {"file", "reason"} for item in info["skipped"])
    assert all(set(item) == {"file", "defect"} for item in info["defects"])
    assert list(info["splits"]) == ["train", "val", "test", "subsets"]
    assert list(info["splits"]["subsets"]) == ["0.025", "0.1", "0.25"]
    assert all(isinstance(p, str) for part in ("train", "val", "test") for p in info["splits"][part])


def test_inspect_bhsd(tmp_path):
    # 10 patients, patient i carries BHSD class i % 5 + 1 on 1-3 slices of 18 px each
    cases = bhsd_cases(10)
    root = write_bhsd(tmp_path / "bhsd", cases)
    cfg = _cfg(tmp_path, "data=bhsd", f"data.root={root}", "data.image_size=32")
    info = inspect_data(cfg.data, tmp_path / "run", Console(file=open(tmp_path / "out.txt", "w")))
    on_disk = json.loads((tmp_path / "run" / "inspect.json").read_text())
    assert on_disk == info
    _check_schema(info)
    n_slices = sum(len(v) for v in cases.values())
    assert info["patients"] == 10 and info["slices"] == n_slices and info["lesion_slices"] == n_slices
    bhsd_to_name = {1: "EDH", 2: "IPH", 3: "IVH", 4: "SAH", 5: "SDH"}
    expected = dict.fromkeys(CLASSES, 0)
    for lesions in cases.values():
        for value, _ in lesions:
            expected[bhsd_to_name[value]] += BOX_VOXELS
    assert info["pixels_per_class"] == expected
    assert info["skipped"] == []
    classes = {f"ID_p{i:02d}": {i % 5 + 1} for i in range(10)}
    remap = {1: 4, 2: 1, 3: 2, 4: 3, 5: 5}
    classes = {p: {remap[c] for c in cs} for p, cs in classes.items()}
    assert info["splits"] == make_splits(classes, 0.15, 0.15, seed=42)
    assert json.loads((tmp_path / "run" / "splits.json").read_text()) == info["splits"]
    assert "patient split (seed 42)" in (tmp_path / "out.txt").read_text()


def test_inspect_ctich_lists_skipped(tmp_path):
    cases = {i: [(("Subdural",), 1)] for i in range(1, 7)}
    cases[3] = [(("Subdural",), 1), (("Epidural", "Subarachnoid"), 4)]
    root = write_ctich(tmp_path / "ct-ich", cases)
    cfg = _cfg(tmp_path, "data=ctich", f"data.root={root}", "data.image_size=32")
    info = inspect_data(cfg.data, tmp_path / "run", Console(file=open(tmp_path / "out.txt", "w")))
    _check_schema(info)
    assert info["patients"] == 6 and info["slices"] == 6
    assert info["pixels_per_class"] == {"IPH": 0, "IVH": 0, "SAH": 0, "EDH": 0, "SDH": 6 * BOX_VOXELS}
    assert len(info["skipped"]) == 1 and info["skipped"][0]["file"].endswith("masks/003.nii")


def test_inspect_subset_patients_list_names_subset_counts(tmp_path):
    root = write_bhsd(tmp_path / "bhsd", bhsd_cases(6))
    cfg = _cfg(tmp_path, "data=bhsd", f"data.root={root}", "data.image_size=32", "data.subset_patients=[2,5,8]")
    msg = ("data.subset_patients=[2, 5, 8]: one patient count for one training run; "
           "a list of subset sizes is data.subset_counts=[2,5,8]")
    with pytest.raises(Exception) as info:  # Hydra's instantiate wraps it; the CLI prints the inner one
        inspect_data(cfg.data, tmp_path / "run", Console(file=open(tmp_path / "out.txt", "w")))
    err = known_error(info.value)
    assert isinstance(err, ConfigError) and str(err) == msg


@pytest.mark.slow
def test_lcgan_inspect_command(tmp_path):
    root = write_bhsd(tmp_path / "bhsd", bhsd_cases(6))
    out = subprocess.run([sys.executable, "-m", "lcgan_lightning.cli.inspect", "data=bhsd", f"data.root={root}",
                          "data.image_size=32", f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path}/run"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    _check_schema(json.loads((tmp_path / "run" / "inspect.json").read_text()))
    assert (tmp_path / "run" / "splits.json").is_file()
    bad = subprocess.run([sys.executable, "-m", "lcgan_lightning.cli.inspect", "data=bhsd",
                          f"data.root={tmp_path}/missing", f"paths.root_dir={tmp_path}",
                          f"hydra.run.dir={tmp_path}/run2"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and f"{tmp_path}/missing: dataset root not found" in bad.stderr


def _break_three(root):
    """Three defective cases of different kinds; returns {file: defect word}."""
    labels = sorted((root / "labelsTr").iterdir())
    images = sorted((root / "imagesTr").iterdir())
    _, label = head_volume([(2, 1)], shape=(32, 30, 6))
    write_nifti(labels[0], label, dtype=np.uint8)
    _, label = head_volume([(2, 1), (9, 3)])
    write_nifti(labels[1], label, dtype=np.uint8)
    labels[2].unlink()
    return {str(labels[0]): "shape mismatch", str(labels[1]): "outside the label map",
            str(images[2]): "image without label"}


def test_inspect_lists_every_defect_at_once(tmp_path):
    root = write_bhsd(tmp_path / "bhsd", bhsd_cases(10))
    broken = _break_three(root)
    cfg = _cfg(tmp_path, "data=bhsd", f"data.root={root}", "data.image_size=32")
    info = inspect_data(cfg.data, tmp_path / "run", Console(file=open(tmp_path / "out.txt", "w"), width=200))
    _check_schema(info)
    assert {d["file"] for d in info["defects"]} == set(broken)
    for d in info["defects"]:
        assert broken[d["file"]] in d["defect"]
    assert info["patients"] == 7  # the healthy ones, split as usual
    out = (tmp_path / "out.txt").read_text()
    assert "defective cases (3)" in out and "shape mismatch" in out and "image without label" in out
    # training stops before it starts, and its one error names all three
    with pytest.raises(DatasetError) as err:
        load_slices(root, "bhsd", image_size=32, cache_dir=tmp_path / "cache")
    assert "3 defective cases" in str(err.value) and len(err.value.defects) == 3
    # the cache entry (healthy cases + read defects) must not let a second run pass silently
    with pytest.raises(DatasetError, match="3 defective cases"):
        load_slices(root, "bhsd", image_size=32, cache_dir=tmp_path / "cache")
    kept = load_slices(root, "bhsd", image_size=32, cache_dir=tmp_path / "cache", on_defect="skip")
    assert len(kept.patient_ids()) == 7 and len(kept.defects) == 3


def test_on_defect_skip_trains_on_the_healthy_cases(tmp_path):
    from hydra.core.global_hydra import GlobalHydra

    from lcgan_lightning.training import train

    root = write_bhsd(tmp_path / "bhsd", bhsd_cases(10))
    broken = _break_three(root)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/run", "data=bhsd", f"data.root={root}",
            "data.image_size=32", "data.batch_size=4", "data.on_defect=skip", "model=fcn8s", "model.width=0.125",
            "model.n_overlay=0", "trainer=cpu", "trainer.max_epochs=1", "callbacks=none", "logger=none",
            "print_config=false", "test=false"])
    summary = train(cfg)
    assert summary["epochs"] == 1
    listed = json.loads((tmp_path / "run" / "skipped_cases.json").read_text())
    assert {d["file"] for d in listed} == set(broken)
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert len(splits["train"] + splits["val"] + splits["test"]) == 7
