"""geozoo.augment"""
