"""Built-in view generators for ssl_core: BYOL's two asymmetric augmentation pipelines.

``kornia`` makes the views on the training device (chosen by ``augment=auto`` on CUDA and MPS);
``albumentations`` makes them per image in the CPU DataLoader workers (chosen on the CPU). Both
follow the recipe in :mod:`ssl_augment.recipe` and share its options (config group ``augment``).
"""
