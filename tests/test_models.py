import pytest

from device.errors import UsageError
from host import models


def _conv_macs(h, w, cin, cout, k=3):
    return h * w * cout * cin * k * k


def test_seed_is_the_article_cnn():
    m = models.build("seed")
    assert [type(l).__name__ for l in m.layers] == [
        "Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense"]
    assert m.output_shape == (None, 10)
    # 320 + 18,496 + 1,605,760 + 1,290 parameters.
    assert models.count_params(m) == 1_625_866
    assert models.count_macs(m) == (_conv_macs(28, 28, 1, 32) + _conv_macs(28, 28, 32, 64)
                                    + 14 * 14 * 64 * 128 + 128 * 10)


def test_edge_is_small_and_cheap():
    m = models.build("edge")
    assert m.input_shape == (None, 28, 28, 1) and m.output_shape == (None, 10)
    names = [type(l).__name__ for l in m.layers]
    assert "BatchNormalization" in names and "GlobalAveragePooling2D" in names and "Flatten" not in names
    expected = (_conv_macs(28, 28, 1, 16) + _conv_macs(14, 14, 16, 24) + _conv_macs(14, 14, 24, 32)
                + _conv_macs(7, 7, 32, 48) + _conv_macs(5, 5, 48, 64) + 64 * 10)
    assert models.count_macs(m) == expected
    seed = models.build("seed")
    assert models.count_macs(seed) / models.count_macs(m) > 4
    assert models.count_params(m) < 56_000


def test_unknown_arch():
    with pytest.raises(UsageError, match="unknown --arch 'resnet'.*edge"):
        models.build("resnet")
