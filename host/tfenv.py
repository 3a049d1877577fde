"""Import this before TensorFlow: tfmot 0.8 needs Keras 2 (tf_keras), not the Keras 3 that
TensorFlow 2.21 ships, and TF_USE_LEGACY_KERAS must be set before TensorFlow is imported."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
