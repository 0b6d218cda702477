"""Knowledge distillation: a small student learns from a larger teacher's softened outputs as
well as from the labels (Hinton et al., 2015). The student keeps its own architecture; only the
loss changes, so what is saved and exported is the plain student."""

from __future__ import annotations

import keras
from keras import ops


class Distiller(keras.Model):
    """Trains `student` (softmax outputs) against labels and `teacher` (softmax outputs)."""

    def __init__(
        self, student: keras.Model, teacher: keras.Model, alpha: float, temperature: float, **kwargs
    ):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.alpha = alpha  # weight of the teacher's term; 1 - alpha goes to the labels
        self.temperature = temperature  # > 1 softens both distributions: dark knowledge

    def call(self, x, training=False):
        return self.student(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        t = self.temperature
        hard = keras.losses.categorical_crossentropy(y, y_pred)
        soft_teacher = ops.softmax(_log(self.teacher(x, training=False)) / t)
        soft_student = ops.softmax(_log(y_pred) / t)
        soft = keras.losses.kl_divergence(soft_teacher, soft_student) * t * t
        return ops.mean((1 - self.alpha) * hard + self.alpha * soft)


def _log(probabilities):
    # log-probabilities are logits up to a constant, which softmax ignores
    return ops.log(ops.clip(probabilities, 1e-7, 1.0))
