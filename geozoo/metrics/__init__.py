"""geozoo.metrics"""
