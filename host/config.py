"""The training configuration: one frozen record, its defaults in one place.

TensorFlow-free on purpose: the command line reads its defaults from here (so ``host --help``
and argument errors answer without loading TensorFlow), and the defaults are the job ``host
train-qat`` runs, so ``TrainConfig()`` in Python and the command without flags train the same
model.  A verb whose job differs (channel pruning fine-tunes an already trained model) names
its own defaults in :data:`VERB_DEFAULTS`, here as well.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields, replace

ARCH_NAMES = ("edge", "seed", "wide")
AUGMENT_MODES = ("camera", "full", "geometric", "none")  # host.augment implements them
LR_SCHEDULES = ("cosine", "exponential")
IO_TYPES = ("int8", "uint8", "float32")


@dataclass(frozen=True)
class TrainConfig:
    """The defaults are those of `host train-qat`, chosen by measurement (three seeds each,
    against the previous default of 9 epochs, ``full`` augmentation, no label smoothing and no
    weight average, and against the new one with each change undone):
    ``benchmarks/train_seeds.py``, results in ``benchmarks/results/<machine>/train_seeds.json``."""
    arch: str = "edge"
    epochs: int = 9                 # float epochs (early stopping on val loss, patience 3)
    qat_epochs: int = 1
    prune_epochs: int = 2
    sparsity: float = 0.0
    batch: int = 128
    lr: float = 2e-3
    qat_lr: float = 1e-4
    lr_schedule: str = "cosine"     # cosine: lr -> lr/100 over the epochs; exponential: x lr_decay/epoch
    lr_decay: float = 0.85          # per-epoch multiplier for the exponential schedule
    l2: float = 0.0
    patience: int = 3
    label_smoothing: float = 0.1    # targets (1 - ls) * one-hot + ls / 10
    ema: float = 0.999              # per-step decay of the float weights' average (0 = off): WeightAverage
    val_split: float = 0.1
    limit: int | None = None
    augment: str = "camera"         # camera | full (the previous default) | geometric | none
    seed: int = 0
    io: str = "int8"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# Verbs whose job is not the main one: `prune-channels` fine-tunes an already trained model
# after the cut (a lower rate, a few more epochs than a from-scratch run would need);
# `host finetune` adjusts a trained model to collected samples (a few epochs at a low rate, so
# the model moves toward the new handwriting without relearning MNIST).
VERB_DEFAULTS = {"prune-channels": {"epochs": 8, "lr": 5e-4}, "finetune": {"epochs": 2, "lr": 1e-4}}


@dataclass(frozen=True)
class MixConfig:
    """How ``host finetune`` mixes collected samples with MNIST (measured with
    ``benchmarks/finetune.py``)."""
    ratio: float = 0.25             # collected share of the pool, so of each batch in expectation
    mnist_images: int = 12000       # MNIST training images in the pool
    holdout: float = 0.2            # share of each digit held out for scoring (no --test)


def defaults(verb: str) -> TrainConfig:
    """The configuration ``host VERB`` uses when no flag is given."""
    return replace(TrainConfig(), **VERB_DEFAULTS.get(verb, {}))


def from_args(verb: str, args: argparse.Namespace) -> TrainConfig:
    """The verb's defaults, overridden by every TrainConfig field its parser defines (the
    parser's ``dest`` names are the field names)."""
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    return replace(defaults(verb), **given)
