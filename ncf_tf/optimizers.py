"""The four learners of the authors' code, with Keras 1's constants and formulas.

Keras 3's Adam and SGD compute exactly Keras 1's update; its Adagrad and
RMSprop put epsilon inside the square root and Adagrad starts its accumulator
at 0.1. Keras 1 (the authors') used, with eps = 1e-8 outside the root:

    Adagrad:  a += g^2;                       p -= lr * g / (sqrt(a) + eps)
    RMSprop:  a = rho * a + (1 - rho) * g^2;  p -= lr * g / (sqrt(a) + eps)
    Adam:     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
              p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

All are *dense*: every parameter and every moment is updated at every step,
including embedding rows absent from the batch (their gradient is 0). Keras 3
does the same on its own (sparse embedding gradients are densified).
"""

from __future__ import annotations

import keras
from keras import ops

LEARNERS = ("adagrad", "adam", "rmsprop", "sgd")
EPSILON = 1e-8


class Keras1Adagrad(keras.optimizers.Optimizer):
    """Adagrad as in Keras 1: zero initial accumulator, epsilon outside the root."""

    def __init__(self, learning_rate=0.01, epsilon=EPSILON, name="adagrad", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.epsilon = epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._accumulators = self.add_optimizer_variables(variables, "accumulator")

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        accumulator = self._accumulators[self._get_variable_index(variable)]
        self.assign_add(accumulator, ops.square(gradient))
        self.assign_sub(variable, ops.divide(ops.multiply(lr, gradient),
                                             ops.add(ops.sqrt(accumulator), self.epsilon)))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


class Keras1RMSprop(keras.optimizers.Optimizer):
    """RMSprop as in Keras 1: rho = 0.9, epsilon outside the root, no momentum."""

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=EPSILON, name="rmsprop", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rho, self.epsilon = rho, epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._velocities = self.add_optimizer_variables(variables, "velocity")

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        velocity = self._velocities[self._get_variable_index(variable)]
        self.assign(velocity, ops.add(ops.multiply(self.rho, velocity),
                                      ops.multiply(1 - self.rho, ops.square(gradient))))
        self.assign_sub(variable, ops.divide(ops.multiply(lr, gradient),
                                             ops.add(ops.sqrt(velocity), self.epsilon)))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


def make_optimizer(learner: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """One of :data:`LEARNERS` with Keras 1's constants."""
    if learning_rate <= 0:
        raise ValueError(f"--lr must be positive, got {learning_rate}")
    if learner == "adam":
        return keras.optimizers.Adam(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=EPSILON)
    if learner == "adagrad":
        return Keras1Adagrad(learning_rate)
    if learner == "rmsprop":
        return Keras1RMSprop(learning_rate)
    if learner == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.0)
    raise ValueError(f"--learner must be one of {', '.join(LEARNERS)}; got {learner!r}")
