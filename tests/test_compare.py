"""lcgan-compare: two groups of segmentation run dirs, paired by position -> compare.json + a table.

Fast tests use run dirs with crafted predictions.npz files; the slow one trains six tiny segmenters
that differ only in their seed (an A/A comparison) and expects "no detectable change".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from lcgan_lightning.cli.compare import OUTPUT, run
from lcgan_lightning.cli.errors import describe
from lcgan_lightning.comparison import ComparisonError, compare_run_dirs
from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.layout import PREDICTIONS

RESULT_KEYS = {"diff", "ci", "p_value", "verdict", "se", "df", "seed_var", "patient_var", "detectable",
               "n_patients", "n_repeats", "level", "method", "p_adjusted", "verdict_adjusted"}
TOP_KEYS = {"variant", "reference", "level", "n_repeats", "n_patients", "shared_test_patients", "family",
            "family_size", "method", "metrics"}
METRICS = ("dsc", "binary_dsc", "precision", "recall")


def write_run(run_dir: Path, pred_seed: int, truth_seed: int = 0, n: int = 30, n_patients: int = 8,
              size: int = 16, arrays: tuple[str, ...] = ("pred", "true", "patient")) -> Path:
    """A run dir whose predictions.npz holds blob truths (fixed by ``truth_seed``, every lesion class)
    and noisy predictions (``pred_seed``), with a patient id per image."""
    rng = np.random.default_rng(truth_seed)
    true = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        y, x = rng.integers(0, size - 5, 2)
        true[i, y: y + 4, x: x + 4] = 1 + i % 5
    patients = np.array([f"P{i % n_patients:02d}" for i in range(n)])
    rng = np.random.default_rng(pred_seed)
    flip = rng.random(true.shape) < 0.15
    pred = np.where(flip, rng.integers(0, 6, true.shape), true).astype(np.uint8)
    run_dir.mkdir(parents=True, exist_ok=True)
    everything = {"pred": pred, "true": true, "patient": patients}
    np.savez_compressed(run_dir / PREDICTIONS, **{k: everything[k] for k in arrays})
    return run_dir


def groups(tmp_path: Path, n_rep: int = 3) -> tuple[list[Path], list[Path]]:
    return ([write_run(tmp_path / f"var/seed={s}", s) for s in range(n_rep)],
            [write_run(tmp_path / f"ref/seed={s}", 100 + s) for s in range(n_rep)])


def leaves(result: dict) -> dict[str, dict]:
    out = {m: result["metrics"][m] for m in METRICS}
    out.update({f"dsc_{c}": r for c, r in result["metrics"]["per_class_dsc_present"].items()})
    return out


def test_compare_run_dirs_gives_every_key(tmp_path):
    variant, reference = groups(tmp_path)
    result = compare_run_dirs(variant, reference)
    assert set(result) == TOP_KEYS
    assert result["variant"] == [str(d) for d in variant] and result["n_repeats"] == 3
    assert result["shared_test_patients"] is True and result["n_patients"] == 8
    assert list(result["metrics"]["per_class_dsc_present"]) == list(LESION_CLASSES)
    for name, r in leaves(result).items():
        assert set(r) == RESULT_KEYS, name
        assert r["verdict"] in ("better", "worse", "no detectable change"), name
        assert r["verdict_adjusted"] in ("better", "worse", "no detectable change"), name
        assert r["p_adjusted"] >= r["p_value"], name
    assert result["family_size"] == 9 and "Holm" in result["family"]
    json.dumps(result, allow_nan=False)


def test_one_run_per_group_is_not_estimable_but_gives_the_difference(tmp_path):
    variant, reference = groups(tmp_path, n_rep=1)
    result = compare_run_dirs(variant, reference)
    dsc = result["metrics"]["dsc"]
    assert dsc["verdict"] == "not estimable" and dsc["reason"] == "one training run per arm"
    assert dsc["verdict_adjusted"] == "not estimable" and dsc["p_adjusted"] is None
    assert isinstance(dsc["diff"], float) and dsc["ci"] == [None, None] and dsc["detectable"] is None
    assert result["family_size"] == 0


@pytest.mark.parametrize("defect", ["no predictions", "no dir", "other patients", "other truth", "other image counts",
                                    "unequal",
                                    "empty", "missing arrays", "level"])
def test_bad_input_is_one_line_naming_the_dir(tmp_path, defect):
    variant, reference = groups(tmp_path)
    culprit = variant[1]
    level = 0.95
    if defect == "no predictions":
        (culprit / PREDICTIONS).unlink()
        want = f"{culprit}: no {PREDICTIONS} (variant group)"
    elif defect == "no dir":
        culprit = tmp_path / "nowhere"
        variant[1] = culprit
        want = f"{culprit}: no such run dir"
    elif defect == "other patients":
        write_run(culprit, 1, n_patients=7)
        want = f"{culprit} covers other test patients than {reference[0]}"
    elif defect == "other truth":
        write_run(culprit, 1, truth_seed=5)
        want = f"{culprit} has other test truth (label maps) than {reference[0]}"  # same patients and counts
    elif defect == "other image counts":
        write_run(culprit, 1, n=29)
        want = f"{culprit} has other test images or truth than {reference[0]}"
    elif defect == "unequal":
        variant = variant[:2]
        want = "variant has 2 run dirs and reference 3"
    elif defect == "empty":
        variant = []
        want = "variant: the group is empty"
    elif defect == "missing arrays":
        write_run(culprit, 1, arrays=("pred", "true"))
        want = f"{culprit / PREDICTIONS}: unreadable (variant group)"
    else:
        level = 95
        want = "level: must be in (0, 1)"
    with pytest.raises(ComparisonError) as info:
        compare_run_dirs(variant, reference, level=level)
    message, hint = describe(info.value)
    assert want in message and "\n" not in message and hint


def test_run_writes_compare_json_and_prints_a_table(tmp_path):
    variant, reference = groups(tmp_path)
    console = Console(record=True, width=160)
    result = run([str(d) for d in variant], [str(d) for d in reference], tmp_path / "out", console=console)
    assert json.loads((tmp_path / "out" / OUTPUT).read_text()) == result
    assert [p.name for p in (tmp_path / "out").iterdir()] == [OUTPUT]  # no temp file left
    text = console.export_text()
    for row in (*METRICS, "dsc IPH", "dsc SDH"):
        assert row in text
    assert "Holm" in text and "detectable" in text


def _cli(out_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}  # conftest sets it
    cmd = [sys.executable, "-m", "lcgan_lightning.cli.compare", f"hydra.run.dir={out_dir}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _group(dirs: list[Path]) -> str:
    return "[" + ",".join(f"'{d}'" for d in dirs) + "]"  # quoted: run dirs hold '='


def test_cli_error_is_two_lines_naming_the_dir(tmp_path):
    variant, reference = groups(tmp_path)
    (variant[2] / PREDICTIONS).unlink()
    out = _cli(tmp_path / "out", f"variant={_group(variant)}", f"reference={_group(reference)}")
    assert out.returncode == 1, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith(("error: ", "hint: "))]
    assert lines[0] == f"error: {variant[2]}: no {PREDICTIONS} (variant group): not a segmentation run's test output"
    assert lines[1].startswith("hint: give two equally long lists") and len(lines) == 2
    assert "Traceback" not in out.stderr


TINY_SEG = [
    "model=fcn8s", "model.fc6_kernel=3", "data=phantom", "data.image_size=64", "data.phantom.num_patients=16",
    "data.phantom.num_slices=8", "data.batch_size=8", "data.test_ratio=0.4", "data.val_ratio=0.1",
    "data.seed=0", "trainer=cpu", "callbacks=none", "logger=none", "model.n_overlay=0",
    "+trainer.max_steps=40", "trainer.max_epochs=1000", "+trainer.limit_val_batches=0",
    "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false", "print_config=false",
]


@pytest.mark.slow
def test_aa_runs_give_no_detectable_change(tmp_path):
    """Six tiny segmenters on one split that differ only in their training seed: 3 against 3."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lcgan_lightning.paths import CONF_DIR
    from lcgan_lightning.training import train

    dirs = {}
    for seed in range(1, 7):
        out = tmp_path / f"seg/seed={seed}"
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=[f"paths.root_dir={tmp_path}", f"paths.output_dir='{out}'",
                                                          f"seed={seed}", *TINY_SEG])
        train(cfg)
        dirs[seed] = out
    preds = [np.load(d / PREDICTIONS)["pred"] for d in dirs.values()]
    assert any(not np.array_equal(preds[0], p) for p in preds[1:])  # the seeds give other models
    variant, reference = [dirs[s] for s in (1, 2, 3)], [dirs[s] for s in (4, 5, 6)]
    out = _cli(tmp_path / "cmp", f"variant={_group(variant)}", f"reference={_group(reference)}")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "cmp" / OUTPUT).read_text())
    assert set(result) == TOP_KEYS and result["variant"] == [str(d) for d in variant]
    assert result["metrics"]["dsc"]["verdict"] == "no detectable change", result["metrics"]["dsc"]
    for name, r in leaves(result).items():
        assert RESULT_KEYS <= set(r) | {"reason"} and "verdict_adjusted" in r, name
    assert "dsc" in out.stdout and "no detectable change" in out.stdout
