"""geozoo.groups"""
