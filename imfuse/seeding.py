"""Building pretrained networks without moving the seeded random generators."""

from __future__ import annotations

import contextlib
import random

import numpy as np


@contextlib.contextmanager
def random_state_kept():
    """Building a pretrained network draws random initial weights that are then overwritten;
    keep those draws from moving the seeded generators, so a model seeded with
    keras.utils.set_random_seed gets the same weights whether or not a pretrained network
    (a loss network, Magenta's MobileNetV2 trunk, cached once per process) was built
    before it in this process."""
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR

    python_state, numpy_state = random.getstate(), np.random.get_state()
    generator = global_state.get_global_attribute(GLOBAL_SEED_GENERATOR)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, generator)
