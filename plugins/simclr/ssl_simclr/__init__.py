"""SimCLR for ssl_core: A Simple Framework for Contrastive Learning of Visual Representations
(Chen, Kornblith, Norouzi & Hinton 2020, arXiv 2002.05709).

Two views of each image go through one encoder and projection head; the NT-Xent loss pulls
the two projections of an image together and pushes them away from the 2(N−1) projections of
the other images in the batch. No predictor, no target network. Registered as the method
``simclr`` by :mod:`ssl_simclr.plugin`.
"""
