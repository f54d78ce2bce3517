"""Models of the toolkit.

Importing the package turns off fast-math in PyTensor's numba backend, unless the user sets
``numba__fastmath`` in ``PYTENSOR_FLAGS`` or in a PyTensor config file (``~/.pytensorrc``, or the
files ``PYTENSORRC`` names). With fast-math, LLVM may reassociate floating-point
operations, and it does so differently when a function is compiled afresh (its parts inlined
into one module) than when its parts are loaded from PyTensor's on-disk numba cache: the same
seed then gave other draws on a machine's first run than on every later run (a chain of 50 tuning + 50
draws differed by 1e-8 at its end, and whole kinship statements differed). Without it, a
cold and a warm cache give bit-identical draws; sampling a 409-cell beta-binomial model was
2-10% slower per leapfrog step.
"""

import os

import pytensor
from pytensor.configparser import parse_config_string


def _user_sets_fastmath() -> bool:
    """Whether PYTENSOR_FLAGS or a PyTensor config file names ``numba__fastmath``."""
    if "numba__fastmath" in parse_config_string(os.environ.get("PYTENSOR_FLAGS", "")):
        return True
    try:  # PyTensor has consumed the flags by now, so this looks in the config files only
        pytensor.config.fetch_val_for_key("numba__fastmath")
    except KeyError:
        return False
    return True


if not _user_sets_fastmath():
    pytensor.config.numba__fastmath = False
