
import numpy as np
import pytest

from device.errors import UsageError
from device.fsio import atomic_write_json
from device.runtime import Model, dequantize, quantize


def test_quantize_uses_the_tensors_own_parameters():
    detail = {"dtype": np.int8, "quantization": (1 / 255, -128)}
    q = quantize(np.array([0.0, 0.502, 1.0], np.float32), detail)
    assert q.dtype == np.int8 and q.tolist() == [-128, 0, 127]
    u = quantize(np.array([0.0, 1.0]), {"dtype": np.uint8, "quantization": (1 / 255, 0)})
    assert u.tolist() == [0, 255]
    # Out-of-range input saturates instead of wrapping.
    assert quantize(np.array([2.0]), detail).tolist() == [127]


def test_dequantize_does_not_wrap_uint8():
    out = dequantize(np.array([0, 255], np.uint8), {"quantization": (0.5, 128)})
    assert out.tolist() == [-64.0, 63.5]
    f = dequantize(np.array([0.25], np.float32), {"quantization": (0.0, 0)})
    assert f.tolist() == [0.25]


@pytest.mark.parametrize("io", ["int8", "uint8", "float32"])
def test_tiny_int8_model_runs_in_device_runtime(tiny_tflite, mnist, io):
    m = Model(tiny_tflite[io])
    assert m.describe()["input"]["dtype"] == io
    assert m.backend.name == "ai-edge-litert"
    scores = m.predict(mnist.x_test[0] / 255.0)
    assert scores.shape == (10,) and abs(float(scores.sum()) - 1.0) < 0.05


def test_threads_and_xnnpack_off(mnist):
    from device.runtime import DEFAULT_MODEL

    x = mnist.x_test[:300] / 255.0
    a = Model(DEFAULT_MODEL, threads=1).predict_many(x)
    b = Model(DEFAULT_MODEL, threads=2, xnnpack=False).predict_many(x)
    # XNNPACK and the built-in kernels may round an int8 step differently inside the network;
    # the trained model's answers do not change.
    assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.995
    assert np.abs(a - b).max() <= 8 / 256


def test_corrupt_models(tmp_path, tiny_tflite):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all" * 10)
    with pytest.raises(UsageError, match="not a TFLite model"):
        Model(junk)
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(tiny_tflite["int8"].read_bytes()[:3000])
    with pytest.raises(UsageError, match="corrupt or truncated"):
        Model(cut)
    with pytest.raises(UsageError, match="cannot read model"):
        Model(tmp_path / "missing.tflite")


def test_wrong_shape(wrong_shape_tflite):
    with pytest.raises(UsageError, match=r"input shape \[1, 32, 32, 3\]"):
        Model(wrong_shape_tflite)


def test_manifest_sha_mismatch(tmp_path, tiny_tflite):
    p = tmp_path / "model.tflite"
    p.write_bytes(tiny_tflite["int8"].read_bytes())
    atomic_write_json(tmp_path / "model.json", {"manifest_version": 1, "sha256": "0" * 64})
    with pytest.raises(UsageError, match="does not match its manifest"):
        Model(p)
    assert Model(p, verify=False).sha256 != "0" * 64


def test_device_cli_bad_model_exit_2(tmp_path, capsys):
    from device.cli import main

    junk = tmp_path / "junk.tflite"
    junk.write_text("hello")
    assert main(["bench", str(junk), "--runs", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a TFLite model" in err[0]


def test_predict_batch_equals_one_invoke_per_image(mnist):
    from device.runtime import DEFAULT_MODEL

    m = Model(DEFAULT_MODEL, threads=1)
    assert m.batchable  # the shipped model's batch dimension is dynamic (-1)
    x = (mnist.x_test[:11] / 255.0).astype(np.float32)
    one_by_one = m.predict_many(x)
    for n in (8, 3, 11, 1):  # the tensor is resized as N changes, and back for predict()
        assert np.array_equal(m.predict_batch(x[:n]), one_by_one[:n])
        assert np.array_equal(m.predict(x[0]), one_by_one[0])
    assert m.predict_batch(x[:0]).shape == (0, 10)
