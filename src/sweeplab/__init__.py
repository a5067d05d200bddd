"""sweeplab: reference pipeline for parameter sweeps of two research models.

Subpackages
-----------
sweeplab.dmf
    Deep matrix factorization: exact sharpness of minimizers and the gradient-descent
    escape experiment (pure numpy/scipy).
sweeplab.mcvd
    Molecular communication via diffusion near a reflecting plane: analytic channel
    models and a particle simulator (pure numpy/numba).
"""

__version__ = "0.1.0"
