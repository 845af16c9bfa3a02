"""Training recipes: the paper's, for fidelity, and a default that fits the run's budget.

The paper (He et al., "Towards Scalable Neural Representation for Diverse Videos", CVPR
2023, implementation details) trains with AdamW (betas 0.9, 0.999), a peak learning rate of
5e-4 reached by a linear warm-up over the first 20% of training and followed by a cosine
decay to zero, batches of 32 clips, for 1600 epochs on UVG: about 585,000 optimiser steps.
A run a thousand times shorter learns almost nothing at that rate. The default recipe
raises the peak rate as the number of optimiser steps falls, and for small networks, by a
power law fitted to a sweep on real clips (``benches/lr_sweep.py``, figures in
``docs/results/lr_sweep.json``); at the paper's step count it gives the paper's rate.

Every field can still be set by hand: a value given overrides the recipe's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from dnerv_fast.errors import UsageError

RECIPES = ("default", "paper")

PAPER_LR = 5e-4
PAPER_WARMUP = 0.2
PAPER_BATCH = 32
BETAS = (0.9, 0.999)
DEFAULT_BATCH = 8
# 1600 epochs of UVG's 3900 frames cut into 8-frame clips of 24 patches each, 32 per batch.
PAPER_STEPS = 1600 * math.ceil(3900 / 8 * 24 / PAPER_BATCH)
# The rule's fit (benches/lr_sweep.py): peak lr = PAPER_LR * (PAPER_STEPS / steps) ** STEP_POWER
# * (REFERENCE_PARAMETERS / parameters) ** SIZE_POWER, between PAPER_LR and MAX_DEFAULT_LR.
STEP_POWER = 0.29
REFERENCE_PARAMETERS = 1_000_000
SIZE_POWER = 0.45
MAX_DEFAULT_LR = 3e-2


@dataclass(frozen=True)
class Recipe:
    """How one run trains: peak learning rate, warm-up share, batch size (clips per step).

    The schedule (warm-up from 0.1 x the peak, then cosine to zero,
    :mod:`dnerv_fast.train.lr_schedule`) and the optimiser (AdamW, :data:`BETAS`, no weight
    decay) are the paper's in every recipe.
    """

    name: str
    lr: float
    warmup: float
    batch_size: int
    steps: int                   # optimiser steps of the whole run
    chosen_by: str = ""          # why the peak rate is what it is

    def describe(self) -> str:
        """The recipe in one line."""
        why = f" ({self.chosen_by})" if self.chosen_by else ""
        return (f"recipe {self.name}: peak lr {self.lr:.3g}{why}, warm-up {self.warmup:.0%}, "
                f"cosine to 0, batch {self.batch_size}, AdamW {BETAS}, {self.steps:,} steps")


def check_recipe(name: str) -> str:
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return name


def default_lr(steps: int, parameters: int) -> float:
    """The default recipe's peak learning rate for ``steps`` optimiser steps of a network of
    ``parameters`` weights."""
    rate = PAPER_LR * (PAPER_STEPS / max(steps, 1)) ** STEP_POWER \
        * (REFERENCE_PARAMETERS / max(parameters, 1)) ** SIZE_POWER
    return min(max(rate, PAPER_LR), MAX_DEFAULT_LR)


def choose(name: str, *, epochs: int, clips: int, parameters: int, lr: float | None = None,
           warmup: float | None = None, batch_size: int | None = None) -> Recipe:
    """The recipe ``name`` for a run of ``epochs`` over ``clips`` clips training a network of
    ``parameters`` weights; ``lr``, ``warmup`` and ``batch_size``, when given, win."""
    check_recipe(name)
    paper = name == "paper"
    batch = batch_size or (PAPER_BATCH if paper else DEFAULT_BATCH)
    steps = epochs * max(1, math.ceil(clips / batch))
    recipe = Recipe(name, PAPER_LR, PAPER_WARMUP, batch, steps,
                    "the paper's" if paper else "")
    if lr is not None:
        return replace(recipe, lr=lr, chosen_by="set by hand",
                       warmup=PAPER_WARMUP if warmup is None else warmup)
    if not paper:
        recipe = replace(recipe, lr=default_lr(steps, parameters),
                         chosen_by=f"for {steps:,} steps of {parameters:,} parameters")
    return recipe if warmup is None else replace(recipe, warmup=warmup)
