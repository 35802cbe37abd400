"""geozoo.data"""
