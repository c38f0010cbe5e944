"""Training: recipes (:mod:`.config`), losses, the trainer and torchrun/DDP helpers.

>>> from rvrt.train import load_recipe, Trainer       # doctest: +SKIP
>>> Trainer(load_recipe("tiny_cpu"), out_dir="runs/tiny").fit()  # doctest: +SKIP
"""

from rvrt.train.config import dumps_toml, list_recipes, load_recipe, resolve_recipe
from rvrt.train.trainer import Trainer, TrainResult

__all__ = ["Trainer", "TrainResult", "dumps_toml", "list_recipes", "load_recipe", "resolve_recipe"]
