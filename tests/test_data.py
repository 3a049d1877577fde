import gzip
import shutil
import struct

import numpy as np
import pytest

from device.errors import UsageError
from host import data
from tests.conftest import MNIST_DIR


def test_loads_real_mnist(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.x_train.dtype == np.uint8
    # Published label counts (shared/data/mnist/README.md).
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _copy(tmp_path):
    for f in MNIST_DIR.glob("*.gz"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def test_raw_idx_files_and_npz(tmp_path, mnist):
    d = tmp_path / "raw"
    d.mkdir()
    for f in MNIST_DIR.glob("*.gz"):
        (d / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    raw = data.load_mnist(d)
    assert np.array_equal(raw.x_test, mnist.x_test)
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=mnist.x_train, y_train=mnist.y_train, x_test=mnist.x_test, y_test=mnist.y_test)
    assert np.array_equal(data.load_mnist(npz).y_train, mnist.y_train)


def test_bad_magic(tmp_path):
    d = _copy(tmp_path)
    # Swap the label file in for the images: magic 2049 where 2051 is expected.
    shutil.copy(d / "t10k-labels-idx1-ubyte.gz", d / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(UsageError, match="bad magic number 2049"):
        data.load_mnist(d)


def test_truncated_gzip(tmp_path):
    d = _copy(tmp_path)
    p = d / "train-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:5000])
    with pytest.raises(UsageError, match="corrupt or truncated"):
        data.load_mnist(d)


def test_wrong_count(tmp_path):
    d = _copy(tmp_path)
    body = struct.pack(">II", 2049, 500) + bytes(500)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(body))
    with pytest.raises(UsageError, match="has 500 items, expected 10000"):
        data.load_mnist(d)


def test_header_disagrees_with_body():
    body = struct.pack(">II", 2049, 10) + bytes(5)
    with pytest.raises(UsageError, match="truncated"):
        data.parse_idx(body, "labels", "x")


def test_labels_out_of_range(tmp_path):
    d = _copy(tmp_path)
    body = struct.pack(">II", 2049, 10000) + bytes([12]) * 10000
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(body))
    with pytest.raises(UsageError, match="outside 0-9"):
        data.load_mnist(d)


def test_missing_file_names_the_options(tmp_path):
    with pytest.raises(UsageError, match="MNIST_DIR.*keras"):
        data.load_mnist(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        data.load_mnist(tmp_path / "nope")


def test_keras_cache_is_second_choice(tmp_path, monkeypatch, mnist):
    monkeypatch.delenv("MNIST_DIR", raising=False)
    cache = tmp_path / "mnist.npz"
    np.savez(cache, x_train=mnist.x_train, y_train=mnist.y_train, x_test=mnist.x_test, y_test=mnist.y_test)
    monkeypatch.setattr(data, "KERAS_CACHE", cache)
    assert data.load_mnist().source == str(cache)


def test_augmentation_keeps_shape_and_range(mnist):
    from host.augment import augment_batch

    x = mnist.x_train[:64]
    y = augment_batch(x, np.random.default_rng(0))
    g = augment_batch(x, np.random.default_rng(0), camera=False)
    assert g.shape == x.shape and not np.array_equal(g, y)
    assert y.shape == x.shape and y.dtype == np.uint8
    assert not np.array_equal(x, y)
    # Still a white digit on black: the border stays dark, ink stays present.
    assert y[:, 0, :].mean() < 5
    kept = y.reshape(64, -1).sum(1) / x.reshape(64, -1).sum(1).astype(float)
    assert kept.min() > 0.4, kept.min()
