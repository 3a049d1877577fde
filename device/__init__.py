"""mnist-edge device side: runs an INT8 MNIST model on a Raspberry Pi and measures every frame.

Imports only numpy, one TFLite interpreter runtime (see :mod:`device.runtime`) and, lazily,
OpenCV / picamera2.  Never TensorFlow (when a light runtime exists) and never ``host``.
"""

__version__ = "0.1.0"
