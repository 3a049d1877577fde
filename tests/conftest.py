"""Shared fixtures: the real MNIST (via MNIST_DIR), the real photo set, tiny real models."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
MNIST_DIR = Path(os.environ.get("MNIST_DIR", SHARED / "mnist"))
# Subprocesses (the CLIs under test) find the data the same way.
os.environ.setdefault("MNIST_DIR", str(MNIST_DIR))
PHOTOS = SHARED / "digit-photos"
SHIPPED = ROOT / "device" / "models" / "model.tflite"
# The golden set's size, which a deploy's and a fleet's golden check report ("N/N identical"):
# 2,100 MNIST test digits and the dev photos in which the preprocessing finds a digit.
GOLDEN_IMAGES = json.loads((ROOT / "device" / "models" / "model.json").read_text())["golden"]["images"]
# Several tests press Ctrl-C on a CLI (SIGINT) as a terminal would.  A suite started as a
# background job (`cmd &`, nohup, some CI runners) inherits SIGINT ignored, and an ignored signal
# stays ignored across exec: those CLIs would never see it.  A handler here is reset to the
# default in every child, as in a terminal's foreground job.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def mnist():
    from host.data import load_mnist

    if not MNIST_DIR.is_dir():
        pytest.skip(f"MNIST not found at {MNIST_DIR} (set MNIST_DIR)")
    return load_mnist(MNIST_DIR)


@pytest.fixture(scope="session")
def photos_dir():
    if not (PHOTOS / "labels.csv").is_file():
        pytest.skip(f"digit photos not found at {PHOTOS}")
    return PHOTOS


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory, mnist):
    """A real (briefly trained) edge model converted to full INT8: {io: path}."""
    from host import models
    from host.convert import convert, representative_images
    from host.optimize import quantize
    from host.train import TrainConfig

    cfg = TrainConfig(limit=1000, augment="none", qat_epochs=1)
    model = models.build("edge")
    qat, _ = quantize(model, mnist, cfg, epochs=1, pruned=False)
    out = tmp_path_factory.mktemp("tiny")
    paths = {}
    rep = representative_images(mnist.x_train, n=64)
    for io in ("int8", "uint8", "float32"):
        p = out / f"tiny-{io}.tflite"
        p.write_bytes(convert(qat, "int8", io, rep))
        paths[io] = p
    return paths


@pytest.fixture(scope="session")
def wrong_shape_tflite(tmp_path_factory):
    """A valid TFLite model whose input is 32x32x3: not an MNIST model."""
    from host import tfenv  # noqa: F401
    import tf_keras as keras
    from host.convert import convert

    m = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                          keras.layers.Dense(10, activation="softmax")])
    p = tmp_path_factory.mktemp("wrong") / "wrong.tflite"
    p.write_bytes(convert(m, "float32"))
    return p


TENSORFLOW = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")


def blocked_python(code: str, block=TENSORFLOW) -> list[str]:
    """argv running ``code`` in a fresh Python where importing any of the ``block`` packages
    raises ImportError (a Pi has no TensorFlow; `host report` must not need it)."""
    blocker = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {tuple(block)!r}:
            raise ImportError(f'{{name}} is blocked in this test')
        return None
sys.meta_path.insert(0, Block())
"""
    return [sys.executable, "-c", blocker + code]


def gray_frame(h=480, w=640, paper=210):
    return np.full((h, w), paper, np.uint8)
