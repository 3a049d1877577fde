"""The device side must work on a Pi, which has no TensorFlow: import and run it with
TensorFlow (and host) made unimportable."""

import subprocess

from tests.conftest import ROOT, TENSORFLOW, blocked_python


def test_device_imports_and_runs_without_tensorflow(tiny_tflite):
    code = f"""
import numpy as np
import device.cli, device.loop, device.bench, device.classify, device.golden, device.info, device.sources.picam, device.synth, device.schema
import device.scenes, device.glyphs, device.lighting, device.blobs, device.levels, device.scoring, device.step
from device.runtime import Model
m = Model({str(tiny_tflite['int8'])!r})
assert m.backend.name == 'ai-edge-litert', m.backend
print(m.predict(np.zeros((28, 28), np.float32)).shape)
assert not any(k.startswith('tensorflow') for k in sys.modules), 'tensorflow was imported'
"""
    out = subprocess.run(blocked_python(code, TENSORFLOW + ("host",)), cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert "(10,)" in out.stdout


def test_device_source_never_names_tensorflow_or_host():
    import re

    pat = re.compile(r"^\s*(import|from)\s+(tensorflow|tf_keras|keras|tensorflow_model_optimization|host)\b",
                     re.M)
    offenders = [p.name for p in (ROOT / "device").rglob("*.py") if pat.search(p.read_text())]
    assert offenders == []
