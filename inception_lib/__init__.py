"""inception_lib: GoogLeNet / Inception v1 ("Going Deeper with Convolutions") from one spec.

Importing this package imports neither torch nor tensorflow: the framework code lives in
``inception_lib.pytorch`` and ``inception_lib.keras`` so a process can import torch first
(importing tensorflow before torchvision aborts the process on these machines).
"""

from inception_lib import arithmetic, spec

__all__ = ["arithmetic", "spec"]
__version__ = "0.1.0"
