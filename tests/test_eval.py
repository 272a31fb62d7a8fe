"""lcgan-eval: a segmenter checkpoint evaluated again on its own test split and on another dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import write_ctich
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lcgan_lightning.errors import ConfigError
from lcgan_lightning.evaluation import EvaluationError, class_presence, evaluate
from lcgan_lightning.metrics import metrics_from_predictions
from lcgan_lightning.models.postprocess import region_majority
from lcgan_lightning.paths import CONF_DIR
from lcgan_lightning.training import train

TINY = [
    "model=basicunet", "data=phantom", "data.image_size=32", "data.phantom.num_patients=12",
    "data.phantom.num_slices=8", "data.batch_size=4", "trainer=cpu", "callbacks=none",
    "logger=none", "model.n_overlay=0", "trainer.max_epochs=6", "seed=0",
]


def _compose(name: str, overrides: list[str], root: Path, run: str):
    GlobalHydra.instance().clear()
    base = [f"paths.root_dir={root}", f"paths.output_dir={root / run}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=base + overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("eval_root")
    summary = train(_compose("train", TINY, root, "train"))
    return root, summary


def test_same_checkpoint_same_test_metrics(trained):
    root, summary = trained
    cfg = _compose("eval", [f"ckpt_path='{summary['best_ckpt']}'", "logger=none", "trainer=cpu"], root, "eval")
    assert cfg.get("data") is None  # the data comes from the checkpoint's stored training config
    result = evaluate(cfg)
    assert result["data"]["from"] == "checkpoint" and result["data"]["image_size"] == 32
    trained_metrics = json.loads((root / "train" / "test_metrics.json").read_text())
    again = json.loads((root / "eval" / "test_metrics.json").read_text())
    for key in ("dsc", "binary_dsc", "precision", "recall", "n_images", "per_class_dsc"):
        assert again[key] == trained_metrics[key], key
    # the usual files: predictions.npz recomputes test_metrics.json exactly; same test patients
    assert again["dsc"] > 0  # the model predicts lesions: the equality below is not all-background
    assert metrics_from_predictions(root / "eval" / "predictions.npz")["dsc"] == again["dsc"]
    with np.load(root / "eval" / "predictions.npz") as a, np.load(root / "train" / "predictions.npz") as b:
        assert np.array_equal(a["pred"], b["pred"]) and np.array_equal(a["patient"], b["patient"])
    assert json.loads((root / "eval" / "splits.json").read_text())["test"] == \
        json.loads((root / "train" / "splits.json").read_text())["test"]
    assert result["metrics"]["dsc"] == again["dsc"]


def test_other_dataset_all_patients_reports_absent_classes(trained, tmp_path):
    root, summary = trained
    # CT-ICH layout, 4 patients, only EDH and IPH lesions (32x32 slices)
    ctich = write_ctich(tmp_path / "ctich", {n: [(["Epidural"], 2), (["Intraparenchymal"], 4)] for n in range(1, 5)})
    cfg = _compose("eval", [f"ckpt_path='{summary['best_ckpt']}'", "logger=none", "trainer=cpu", "data=ctich",
                            f"data.root={ctich}", "data.cache_dir=null", "split=all"], root, "eval_ctich")
    result = evaluate(cfg)
    assert result["data"]["from"] == "command line" and result["data"]["dataset_format"] == "ctich"
    assert result["data"]["image_size"] == 32 and result["patients"] == 4 and result["slices"] == 8
    classes = result["classes"]
    assert classes["EDH"]["truth_slices"] == 4 and classes["IPH"]["truth_slices"] == 4
    for name in ("IVH", "SAH", "SDH"):
        assert classes[name]["status"] == "absent from the evaluated truth"
        assert result["metrics"]["per_class_dsc_present"][name] is None
    saved = json.loads((root / "eval_ctich" / "eval.json").read_text())
    assert saved["classes"] == classes and saved["split"] == "all"


def test_class_presence_by_hand():
    trues = np.zeros((3, 4, 4), np.uint8)
    preds = np.zeros((3, 4, 4), np.uint8)
    trues[0, 0, 0], trues[1, 1, 1] = 1, 1   # IPH in 2 slices
    preds[2, 2, 2] = 5                        # SDH predicted once, never true
    table = class_presence(preds, trues)
    assert table["IPH"] == {"truth_slices": 2, "predicted_slices": 0, "status": "present"}
    assert table["SDH"]["predicted_slices"] == 1 and table["SDH"]["status"] != "present"


def test_bad_checkpoints_are_named(trained, tmp_path):
    root, _ = trained
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        evaluate(_compose("eval", [f"ckpt_path={missing}", "logger=none"], root, "e1"))
    not_seg = tmp_path / "gan.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"ngf": 8}}, not_seg)
    with pytest.raises(EvaluationError, match="gan.ckpt.*segmenter"):
        evaluate(_compose("eval", [f"ckpt_path={not_seg}", "logger=none"], root, "e2"))
    cfg = _compose("eval", ["ckpt_path=x.ckpt", "split=holdout", "logger=none"], root, "e3")
    with pytest.raises(EvaluationError, match="split='holdout'"):
        evaluate(cfg)


def test_wandb_name_says_what_is_evaluated(trained):
    root, _ = trained
    cfg = _compose("eval", ["ckpt_path=x.ckpt", "split=all", "data=ctich"], root, "e4")
    assert cfg.logger.wandb.name == "eval split=all ctich"
    assert cfg.logger.wandb.job_type == "eval" and "split=all" in cfg.logger.wandb.tags


def test_postprocess_override_evaluates_the_same_weights_the_other_way(trained):
    """postprocess=region_majority relabels lesion regions; the binary masks stay those of the raw run."""
    root, summary = trained
    base = [f"ckpt_path='{summary['best_ckpt']}'", "logger=none", "trainer=cpu"]
    raw = evaluate(_compose("eval", base, root, "eval_raw"))
    post = evaluate(_compose("eval", [*base, "postprocess=region_majority"], root, "eval_post"))
    assert raw["postprocess"] == "none" and post["postprocess"] == "region_majority"
    with np.load(root / "eval_raw" / "predictions.npz") as a, np.load(root / "eval_post" / "predictions.npz") as b:
        assert np.array_equal(a["pred"] > 0, b["pred"] > 0)
        expected = region_majority(torch.from_numpy(a["pred"].astype(np.int64)), 6).numpy()
        assert not np.array_equal(expected, a["pred"])  # this model paints mixed regions: the override shows
        assert np.array_equal(b["pred"], expected)
    assert post["metrics"]["binary_dsc"] == raw["metrics"]["binary_dsc"]
    with pytest.raises(ConfigError, match="^postprocess='largest'"):
        evaluate(_compose("eval", [*base, "postprocess=largest"], root, "eval_bad"))


# Data keys an evaluation takes as they are (from the checkpoint's training config or the command
# line): where and how to read slices, and the split. Every other key describes the training set
# and must be reset by evaluation.TRAINING_ONLY_DATA_KEYS.
EVALUATION_DATA_KEYS = {
    "_target_", "dataset_format", "root", "image_size", "batch_size", "eval_batch_size", "val_samples",
    "num_workers", "pin_memory", "window", "lesion_only", "val_ratio", "test_ratio", "subsets",
    "subset_counts", "seed", "sample_seed", "cache_dir", "splits_path", "label_map",
    "multi_label_slices", "on_defect", "hu_offset", "phantom",
}


@pytest.mark.parametrize("data", ["bhsd", "ctich", "folder", "phantom"])
def test_every_data_key_is_either_evaluated_as_trained_or_reset(data):
    """A new data key must be sorted here: one that changes the training set (an augmentation, a
    subset) and is missing from TRAINING_ONLY_DATA_KEYS would make lcgan-eval test on it."""
    from lcgan_lightning.evaluation import TRAINING_ONLY_DATA_KEYS

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        keys = set(compose("train", overrides=[f"data={data}"]).data)
    assert not EVALUATION_DATA_KEYS & set(TRAINING_ONLY_DATA_KEYS)
    assert keys - EVALUATION_DATA_KEYS == set(TRAINING_ONLY_DATA_KEYS), (
        "sort the new data key(s) into TRAINING_ONLY_DATA_KEYS or EVALUATION_DATA_KEYS")
