import numpy as np
import pytest

from device.sources.picam import y_plane


def _yuv420(w, h, stride):
    """A synthetic picamera2 lores buffer: Y plane rows padded to ``stride``, then U and V."""
    y = (np.arange(h * w) % 251).astype(np.uint8).reshape(h, w)
    buf = np.full((h * 3 // 2, stride), 77, np.uint8)  # 77 = padding / chroma garbage
    buf[:h, :w] = y
    return y, buf


@pytest.mark.parametrize("w,h,stride", [(320, 240, 320), (300, 200, 320), (150, 100, 192)])
def test_y_plane_from_2d_array(w, h, stride):
    y, buf = _yuv420(w, h, stride)
    out = y_plane(buf, w, h)
    assert out.shape == (h, w) and np.array_equal(out, y)


def test_y_plane_from_flat_buffer_needs_stride():
    y, buf = _yuv420(300, 200, 320)
    flat = buf.reshape(-1)
    assert np.array_equal(y_plane(flat, 300, 200, stride=320), y)
    with pytest.raises(ValueError):
        y_plane(flat, 300, 200)
    with pytest.raises(ValueError):
        y_plane(buf, 400, 200)


def test_picamera_missing_is_one_clear_line(capsys):
    from device.cli import main

    assert main(["run", "--camera", "--frames", "1", "--no-output"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sudo apt install python3-picamera2" in err[0]
    assert "--system-site-packages" in err[0]
