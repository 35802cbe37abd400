"""Whole networks built from :mod:`geozoo.nn`; importing this module registers the zoo builders."""

from geozoo.nets.affconv import AffConvNet
from geozoo.nets.cnn import PlainCNN
from geozoo.nets.e3nn_nets import E3PointClassifier, E3TensorRegressor
from geozoo.nets.equivariant_mlp import EquivariantMLP, PlainMLP
from geozoo.nets.steerable import SteerableCNN
from geozoo.nets.students import cnn_mnist_tiny
from geozoo.nets.transformer import PatchTransformer
from geozoo.rl.zoo_entry import digitsum_grpo_mnist

__all__ = [
    "AffConvNet",
    "E3PointClassifier",
    "E3TensorRegressor",
    "EquivariantMLP",
    "PatchTransformer",
    "PlainCNN",
    "PlainMLP",
    "SteerableCNN",
    "cnn_mnist_tiny",
    "digitsum_grpo_mnist",
]
