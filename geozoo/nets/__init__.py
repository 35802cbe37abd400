"""Whole networks built from :mod:`geozoo.nn`; importing this module registers the zoo builders."""

from geozoo.nets.cnn import PlainCNN
from geozoo.nets.transformer import PatchTransformer

__all__ = ["PatchTransformer", "PlainCNN"]
