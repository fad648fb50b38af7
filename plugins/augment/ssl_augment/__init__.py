"""Built-in view generators for ssl_core: BYOL's two asymmetric views, and multi-crop.

``kornia`` cuts each view's crop and flip in the CPU DataLoader workers and makes the rest on
the training device (chosen by ``augment=auto`` on CUDA and MPS); ``albumentations`` makes the
whole views per image in the workers (chosen on the CPU). Both follow the recipe in
:mod:`ssl_augment.recipe` and share its options (config group ``augment``).
``multicrop`` makes two global views and several smaller local crops per image, the multi-crop
of DINO and SwAV (:mod:`ssl_augment.multicrop`).
"""
