"""BYOL for ssl_core: Bootstrap Your Own Latent (Grill et al. 2020, arXiv 2006.07733).

An online encoder, projector and predictor learn to predict the projection that a slowly
moving target (an exponential moving average of the online encoder and projector) gives for
another view of the same image. Registered as the method ``byol`` by :mod:`ssl_byol.plugin`.
"""
