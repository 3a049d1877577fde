"""Float training (``host train``) and the shared fit loop QAT and pruning reuse."""

from __future__ import annotations

import math

import numpy as np

from host import tfenv  # noqa: F401
import tf_keras as keras

from host.augment import to_float, train_dataset
from host.config import TrainConfig  # noqa: F401  (TensorFlow-free, read by the CLI)
from host.data import Mnist


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)


def split(data: Mnist, cfg: TrainConfig):
    """(x_train, y_train), (x_val, y_val) as uint8 arrays: ``--limit`` first, then a fixed
    validation split taken from a seeded permutation."""
    x, y = data.x_train, data.y_train
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(x))
    if cfg.limit:
        order = order[: cfg.limit]
    n_val = max(1, int(round(len(order) * cfg.val_split)))
    val, tr = order[:n_val], order[n_val:]
    return (x[tr], y[tr]), (x[val], y[val])


def compile_model(model, lr) -> None:
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def lr_at(epoch: int, epochs: int, lr: float, cfg: TrainConfig) -> float:
    """The learning rate of ``epoch`` (0-based) out of ``epochs``."""
    if cfg.lr_schedule == "exponential":
        return lr * cfg.lr_decay ** epoch
    # Cosine decay to 1 % of the initial rate at the last epoch: the last epochs polish the
    # weights, which is what a short CPU budget needs.
    frac = epoch / max(1, epochs - 1)
    return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))


def fit(model, data: Mnist, cfg: TrainConfig, epochs: int, lr: float, extra_callbacks=(),
        early_stop: bool = True, verbose: int = 2) -> dict:
    """Compile and fit ``model``; returns the Keras history as a dict of lists.

    Adam with a per-epoch learning-rate decay (cosine or exponential); early stopping on validation loss
    (patience ``cfg.patience``, best weights restored).
    """
    (xtr, ytr), (xval, yval) = split(data, cfg)
    compile_model(model, lr)
    callbacks = [keras.callbacks.LearningRateScheduler(lambda ep: lr_at(ep, epochs, lr, cfg))]
    if early_stop:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience,
                                                       restore_best_weights=True))
    callbacks.extend(extra_callbacks)
    hist = model.fit(train_dataset(xtr, ytr, cfg.batch, cfg.augment, cfg.seed),
                     validation_data=(to_float(xval), yval), epochs=epochs,
                     callbacks=callbacks, verbose=verbose)
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def steps_per_epoch(data: Mnist, cfg: TrainConfig) -> int:
    (xtr, _), _ = split(data, cfg)
    return math.ceil(len(xtr) / cfg.batch)


def keras_accuracy(model, data: Mnist) -> float:
    """Accuracy of a Keras model on all 10,000 test images."""
    probs = model.predict(to_float(data.x_test), batch_size=512, verbose=0)
    return float(np.mean(np.argmax(probs, axis=1) == data.y_test))


def load_keras(path: str):
    """Load a float or QAT Keras model saved by this tool (.h5 / .keras)."""
    import tensorflow_model_optimization as tfmot

    from device.errors import UsageError

    try:
        with tfmot.quantization.keras.quantize_scope():
            return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, ImportError) as exc:
        raise UsageError(f"cannot load Keras model {path}: {str(exc).splitlines()[0]}; pass a "
                         ".h5 model saved by `host train` or `host train-qat`") from None

