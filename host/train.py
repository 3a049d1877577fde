"""Float training (``host train``) and the shared fit loop QAT and pruning reuse."""

from __future__ import annotations

import math

import numpy as np

from host import tfenv  # noqa: F401
import tensorflow as tf
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


def smoothed_crossentropy(label_smoothing: float):
    """Cross-entropy of sparse labels against smoothed one-hot targets (tf_keras's sparse loss
    has no smoothing): the model is not pushed to certainty on MNIST's odd digits, which
    measured here as fewer test errors and a steadier result across seeds."""
    def loss(y, probs):
        onehot = tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), tf.shape(probs)[-1])
        return keras.losses.categorical_crossentropy(onehot, probs, label_smoothing=label_smoothing)
    return loss


def compile_model(model, lr, label_smoothing: float = 0.0) -> None:
    loss = smoothed_crossentropy(label_smoothing) if label_smoothing else "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss,
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


class WeightAverage(keras.callbacks.Callback):
    """An exponential moving average of all the model's float weights (BatchNorm statistics
    included), updated after every step: the average of the last few hundred steps generalises
    better than the last step's weights and varies less from seed to seed.

    Validation sees the averaged weights (swapped in for each evaluation), so early stopping
    judges the weights that will be kept; at the end the model holds the average of the epoch
    with the lowest validation loss.  The first steps use a shorter horizon
    (``min(decay, (1 + n) / (10 + n))``, as ``tf.train.ExponentialMovingAverage``) so the average
    never carries much of the random initialisation."""

    def __init__(self, decay: float, monitor: str = "val_loss"):
        super().__init__()
        self.decay, self.monitor = float(decay), monitor

    def on_train_begin(self, logs=None):
        # Float variables only: QAT wrappers also hold an integer step counter.
        self._vars = [w for w in self.model.weights if w.dtype.is_floating]
        self._shadow = [tf.Variable(w, trainable=False) for w in self._vars]
        self._saved = [tf.Variable(w, trainable=False) for w in self._vars]
        self._steps = tf.Variable(0.0, trainable=False)
        self._best, self._best_weights = float("inf"), None

        @tf.function
        def update():
            self._steps.assign_add(1.0)
            d = tf.minimum(self.decay, (1.0 + self._steps) / (10.0 + self._steps))
            for s, w in zip(self._shadow, self._vars):
                s.assign(d * s + (1.0 - d) * w)

        @tf.function
        def swap():
            for s, v, w in zip(self._shadow, self._saved, self._vars):
                v.assign(w)
                w.assign(s)
                s.assign(v)

        self._update, self._swap = update, swap

    def on_train_batch_end(self, batch, logs=None):
        self._update()

    # Keras runs validation inside fit with the same callbacks: swap in, evaluate, swap back.
    def on_test_begin(self, logs=None):
        self._swap()

    def on_test_end(self, logs=None):
        self._swap()

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None or current < self._best:
            self._best = float("inf") if current is None else float(current)
            self._best_weights = [s.numpy() for s in self._shadow]

    def on_train_end(self, logs=None):
        final = self._best_weights or [s.numpy() for s in self._shadow]
        for w, value in zip(self._vars, final):
            w.assign(value)


def lr_at(epoch: int, epochs: int, lr: float, cfg: TrainConfig) -> float:
    """The learning rate of ``epoch`` (0-based) out of ``epochs``."""
    if cfg.lr_schedule == "exponential":
        return lr * cfg.lr_decay ** epoch
    # Cosine decay to 1 % of the initial rate at the last epoch: the last epochs polish the
    # weights, which is what a short CPU budget needs.
    frac = epoch / max(1, epochs - 1)
    return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))


def fit(model, data: Mnist, cfg: TrainConfig, epochs: int, lr: float, extra_callbacks=(),
        early_stop: bool = True, verbose: int = 2, ema: float | None = None) -> dict:
    """Compile and fit ``model``; returns the Keras history as a dict of lists.

    Adam with a per-epoch learning-rate decay (cosine or exponential), label smoothing
    ``cfg.label_smoothing``; with ``ema`` (default ``cfg.ema``) > 0 the weights kept are a moving
    average (:class:`WeightAverage`); early stopping on validation loss (patience ``cfg.patience``, the
    best epoch's weights restored).
    """
    (xtr, ytr), (xval, yval) = split(data, cfg)
    compile_model(model, lr, cfg.label_smoothing)
    callbacks = [keras.callbacks.LearningRateScheduler(lambda ep: lr_at(ep, epochs, lr, cfg))]
    ema = cfg.ema if ema is None else ema
    if ema:
        callbacks.append(WeightAverage(ema))
    if early_stop:
        # With a weight average, that callback keeps the best epoch's averaged weights.
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience,
                                                       restore_best_weights=not ema))
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

