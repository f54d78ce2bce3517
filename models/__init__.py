"""Models of the toolkit.

Importing the package turns off fast-math in PyTensor's numba backend (unless the user's
``PYTENSOR_FLAGS`` name ``numba__fastmath``). With fast-math, LLVM may reassociate floating-point
operations, and it does so differently when a function is compiled afresh (its parts inlined
into one module) than when its parts are loaded from PyTensor's on-disk numba cache: the same
seed then gave other draws on a machine's first run than on every later run (a chain of 50 tuning + 50
draws differed by 1e-8 at its end, and whole kinship statements differed). Without it, a
cold and a warm cache give bit-identical draws; sampling a 409-cell beta-binomial model was
2-10% slower per leapfrog step.
"""

import os

import pytensor

if "numba__fastmath" not in os.environ.get("PYTENSOR_FLAGS", ""):
    pytensor.config.numba__fastmath = False
