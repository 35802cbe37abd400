"""Whole networks built from :mod:`geozoo.nn`; importing this module registers the zoo builders."""

from geozoo.nets.cnn import PlainCNN

__all__ = ["PlainCNN"]
