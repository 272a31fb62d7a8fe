"""Print the resolved run config as a Rich tree (and keep the same text beside `config.yaml`).

Like the lightning-hydra-template's `print_config_tree`: one branch per top-level key, the
config groups first in a fixed order (`DEFAULT_ORDER`), then every other key as it comes.
Also `MakeSweepDir`, the Hydra start-up callback `conf/hparams_search/seg_optuna.yaml` needs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import rich
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, DictKeyType, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

from lcgan_lightning.config import to_plain

DEFAULT_ORDER = ("data", "model", "trainer", "callbacks", "logger", "paths")
TREE_FILE = "config_tree.log"
# the saved text is meant for reading in an editor: wide enough that paths are not wrapped
FILE_WIDTH = 160


def build_config_tree(cfg: DictConfig, fields: Sequence[str] | None = None) -> Tree:
    """Rich tree of the resolved `cfg`: `fields` (in that order) or every key but `hydra`."""
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"cfg must be an OmegaConf DictConfig, got {type(cfg).__name__}")
    keys: list[DictKeyType]
    if fields is None:
        keys = [k for k in DEFAULT_ORDER if k in cfg]
        keys += [k for k in cfg if k not in keys and k != "hydra"]
    else:
        unknown = [f for f in fields if f not in cfg]
        if unknown:
            raise ValueError(f"fields {unknown} are not top-level keys of the config ({list(cfg)})")
        keys = list(fields)

    style = "dim"
    tree = Tree("CONFIG", style=style, guide_style=style)
    for key in keys:
        branch = tree.add(str(key), style=style, guide_style=style)
        value = to_plain(cfg[key])
        if isinstance(value, (dict, list)):
            text = OmegaConf.to_yaml(OmegaConf.create(value)).rstrip() or "{}"
            branch.add(Syntax(text, "yaml", word_wrap=True, background_color="default"))
        else:
            branch.add(str(value))
    return tree


def print_config_tree(
    cfg: DictConfig, save_to: Path | None = None, fields: Sequence[str] | None = None
) -> str:
    """Print the resolved config as a Rich tree; returns its plain text.

    `save_to`: a directory (the run dir, where `config.yaml` is) to also write the text to
    `config_tree.log`. `fields`: top-level keys to show, in order (default: all but `hydra`,
    groups first). Whether to call this at all (`print_config`) is the caller's decision.
    """
    tree = build_config_tree(cfg, fields)
    rich.print(tree)
    buffer = io.StringIO()
    Console(file=buffer, width=FILE_WIDTH, color_system=None, force_terminal=False).print(tree)
    text = buffer.getvalue()
    if save_to is not None:
        save_to = Path(save_to)
        if save_to.exists() and not save_to.is_dir():
            raise NotADirectoryError(f"save_to must be a directory (the run dir), got file {save_to}")
        save_to.mkdir(parents=True, exist_ok=True)
        (save_to / TREE_FILE).write_text(text)
    return text


class MakeSweepDir(Callback):
    """Hydra callback: create the sweep dir before the sweeper starts.

    The Optuna sweeper opens its `sqlite:///<sweep dir>/optuna.db` storage before the launcher
    creates the sweep dir, and SQLite does not create missing folders.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:  # noqa: D102
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
