"""An example plugin for ssl_core, and the template to copy for a new one.

It adds one component of each kind a method needs: the method ``barlow_twins`` (Zbontar et
al. 2021), the backbone ``small_cnn`` (a four-block CNN for small images) and the view
generator ``crop_flip`` (random resized crops, flips and brightness/contrast jitter made on
the training device in plain torch). :mod:`ssl_plugin_example.plugin` registers them.
"""

__version__ = "0.1.0"
