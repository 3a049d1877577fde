"""mnist-edge host side: train, prune, quantize, convert and evaluate the MNIST CNN."""

__version__ = "0.1.0"
