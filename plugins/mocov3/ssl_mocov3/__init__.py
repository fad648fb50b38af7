"""MoCo v3 for ssl_core: An Empirical Study of Training Self-Supervised Vision Transformers
(Chen, Xie & He 2021, arXiv 2104.02057).

A query encoder (backbone, projector, predictor) and a momentum encoder (an exponential moving
average of backbone and projector) embed two views; an InfoNCE loss asks each query to pick
the key of its own image among the keys of the whole batch. Registered as the method
``mocov3`` by :mod:`ssl_mocov3.plugin`.
"""
