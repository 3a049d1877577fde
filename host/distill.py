"""Knowledge distillation (Hinton et al., 2015): a compact student learns from a larger
teacher's softened class probabilities as well as from the labels.

loss = alpha * CE(labels, student) + (1 - alpha) * T^2 * CE(softmax(z_t / T), softmax(z_s / T))

The models here end in a softmax, so the logits are recovered as log-probabilities (a softmax
is unchanged by the constant that log(softmax(z)) differs from z by).  The T^2 factor keeps the
soft term's gradients on the same scale as the hard term's whatever the temperature.
"""

from __future__ import annotations

from host import tfenv  # noqa: F401
import tensorflow as tf
import tf_keras as keras

_EPS = 1e-7


def soft_log_probs(probs, temperature: float):
    """log softmax(log(p) / T): the distribution at temperature T, from probabilities."""
    return tf.nn.log_softmax(tf.math.log(probs + _EPS) / temperature, axis=-1)


def distillation_loss(y, student_probs, teacher_probs, temperature: float, alpha: float):
    """Per-example loss (see the module docstring)."""
    hard = keras.losses.sparse_categorical_crossentropy(y, student_probs)
    soft_t = tf.exp(soft_log_probs(teacher_probs, temperature))
    soft = -tf.reduce_sum(soft_t * soft_log_probs(student_probs, temperature), axis=-1)
    return alpha * hard + (1.0 - alpha) * temperature ** 2 * soft


class Distiller(keras.Model):
    """Trains ``student`` against a frozen ``teacher``; evaluates and predicts as the student,
    so ``host.train.fit`` (LR schedule, early stopping on validation loss) drives it as-is.

    Its own ``loss`` and ``accuracy`` trackers average over the epoch, as a compiled model's do
    (a raw loss returned from a step would report the last batch only, and early stopping on
    ``val_loss`` would follow that noise)."""

    def __init__(self, student, teacher, temperature: float = 4.0, alpha: float = 0.3):
        super().__init__(name="distiller")
        self.student, self.teacher = student, teacher
        self.teacher.trainable = False
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy]  # reset by Keras at the start of each epoch

    def call(self, x, training=False):
        return self.student(x, training=training)

    def _logs(self, y, probs, loss):
        self.loss_tracker.update_state(loss)
        self.accuracy.update_state(y, probs)
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy.result()}

    def train_step(self, data):
        x, y = data
        teacher_probs = self.teacher(x, training=False)
        with tf.GradientTape() as tape:
            probs = self.student(x, training=True)
            loss = tf.reduce_mean(distillation_loss(y, probs, teacher_probs, self.temperature, self.alpha))
            loss += sum(self.student.losses) if self.student.losses else 0.0
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._logs(y, probs, loss)

    def test_step(self, data):
        # Validation is judged as the student will be used: plain cross-entropy on labels.
        x, y = data
        probs = self.student(x, training=False)
        return self._logs(y, probs, tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probs)))
