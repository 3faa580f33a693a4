"""Deprecated alias of `lmlib.distributed` (renamed: `dist/` reads as build output), kept for
one release; import from `lmlib.distributed` instead."""

import warnings

from lmlib.distributed import *  # noqa: F403
from lmlib.distributed import __all__  # noqa: F401

warnings.warn("lmlib.dist is deprecated; import lmlib.distributed instead",
              DeprecationWarning, stacklevel=2)
