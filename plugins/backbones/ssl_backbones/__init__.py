"""Backbones for ssl_core: the ``timm`` family, answering ``backbone=NAME`` for any timm model."""
