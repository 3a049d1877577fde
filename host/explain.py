"""Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a class lies.

For a convolutional feature map A (h x w x k) and the predicted class c, the channel weights
are the spatial means of d score_c / d A; the heatmap is ReLU(sum_k weight_k * A_k), scaled to
[0, 1] and resized to the 28x28 input.  The score is the class's log-probability (the models
end in a softmax; the log keeps the gradient from vanishing when the model is confident).
"""

from __future__ import annotations

import numpy as np

from device.errors import UsageError


def default_layer(model, min_side: int = 7) -> str:
    """The last layer with a 4-D output at least ``min_side`` pixels wide: the deepest map still
    fine enough to point at a stroke (edge: b3a_relu 7x7; seed: the 14x14 block after pooling)."""
    for layer in reversed(model.layers):
        shape = layer.output_shape
        if isinstance(shape, tuple) and len(shape) == 4 and shape[1] and shape[1] >= min_side:
            return layer.name
    raise UsageError(f"{model.name} has no convolutional feature map of at least {min_side}x{min_side}; "
                     "pass --layer NAME")


def grad_cam(model, images: np.ndarray, layer: str | None = None):
    """(heatmaps (N, 28, 28) in [0, 1], probabilities (N, 10)) for float images (N, 28, 28)."""
    import cv2
    import tensorflow as tf
    import tf_keras as keras

    name = layer or default_layer(model)
    try:
        target = model.get_layer(name)
    except ValueError:
        names = ", ".join(l.name for l in model.layers if len(getattr(l, "output_shape", ()) or ()) == 4)
        raise UsageError(f"no layer {name!r}; feature-map layers: {names}") from None
    probe = keras.Model(model.inputs, [target.output, model.output])
    x = tf.convert_to_tensor(images.reshape(-1, 28, 28, 1).astype(np.float32))
    with tf.GradientTape() as tape:
        fmap, probs = probe(x, training=False)
        cls = tf.argmax(probs, axis=1)
        score = tf.math.log(tf.gather(probs, cls, axis=1, batch_dims=1) + 1e-7)
    grads = tape.gradient(score, fmap)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1)).numpy()
    heat = np.zeros((len(cam), 28, 28), np.float32)
    for i, c in enumerate(cam):
        top = c.max()
        if top > 0:
            heat[i] = cv2.resize(c / top, (28, 28), interpolation=cv2.INTER_LINEAR)
    return np.clip(heat, 0, 1), probs.numpy()


def save_grid(path, images, heats, probs, titles, labels=None, cols: int = 6) -> None:
    """A PNG grid (``path``: a file name or a binary file object): per image, the model input and the heatmap over it, with the prediction
    (red when it disagrees with the label)."""
    from host.report.plots import pyplot

    plt = pyplot()

    n = len(images)
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2.4 * cols, 1.45 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, cols)
        a, b = axes[r][2 * c], axes[r][2 * c + 1]
        a.imshow(images[i], cmap="gray", vmin=0, vmax=1)
        b.imshow(images[i], cmap="gray", vmin=0, vmax=1)
        b.imshow(heats[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        pred = int(np.argmax(probs[i]))
        label = None if labels is None else labels[i]
        text = f"{pred} ({probs[i][pred]:.2f})" + ("" if label is None else f" true {label}")
        a.set_title(titles[i][:18], fontsize=6)
        b.set_title(text, fontsize=7, color="#cc3311" if label is not None and label != pred else "black")
    fig.suptitle("Grad-CAM: input (left) and the evidence for the predicted class (right)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
