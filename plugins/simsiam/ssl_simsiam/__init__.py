"""SimSiam for ssl_core: Exploring Simple Siamese Representation Learning (Chen & He 2021,
arXiv 2011.10566).

Two views go through the same encoder and projector; a predictor on one side regresses the
other side's projection, which is held fixed by a stop-gradient. There is no target network
and no negative pair: the predictor's asymmetry and the stop-gradient alone prevent collapse.
Registered as the method ``simsiam`` by :mod:`ssl_simsiam.plugin`.
"""
