"""geozoo.tasks"""
