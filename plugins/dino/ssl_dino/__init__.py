"""DINO for ssl_core: Emerging Properties in Self-Supervised Vision Transformers (Caron et al.
2021, arXiv 2104.14294), self-distillation with no labels.

A student network (backbone and head) is trained to match, on every crop of an image, the
output distribution a teacher (an exponential moving average of the student) gives for the
*global* crops of the same image. Centering and sharpening of the teacher's output prevent
collapse. Registered as the method ``dino`` by :mod:`ssl_dino.plugin`; by default it uses the
``multicrop`` view generator (2 global + 8 local crops).
"""
