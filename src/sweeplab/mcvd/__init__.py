"""Molecular communication via diffusion near reflecting planes (spec: mcvd.md, mcvd_exact.md).

Units: µm, s, µm²/s. The reflecting plane is ``x = 0`` and the fluid is ``x >= 0``; a slab adds a
second reflecting plane ``x = W`` (``Geometry(..., slab_width=W)``).
"""

from .analytic import (
    ALL_MODELS,
    MODELS,
    absorbed_fraction,
    erfc_terms,
    hitting_rate,
    image_charges,
    steady_state_fraction,
)
from .exact import exact_absorbed_fraction, exact_hitting_rate, laplace_hitting
from .geometry import Geometry
from .metrics import (
    Estimate,
    isi_taps,
    peak,
    rate_nrmse,
    received_fraction,
    relative_error,
    whole_steps,
)
from .simulator import (
    CORRECTIONS,
    SimulationResult,
    binned_hitting_rate,
    combine,
    cumulative_fraction,
    plan_batches,
    simulate,
    simulate_batch,
    simulate_image_pair,
)

__all__ = [
    "ALL_MODELS",
    "CORRECTIONS",
    "MODELS",
    "Estimate",
    "Geometry",
    "SimulationResult",
    "absorbed_fraction",
    "binned_hitting_rate",
    "combine",
    "cumulative_fraction",
    "erfc_terms",
    "exact_absorbed_fraction",
    "exact_hitting_rate",
    "hitting_rate",
    "image_charges",
    "isi_taps",
    "laplace_hitting",
    "peak",
    "plan_batches",
    "rate_nrmse",
    "received_fraction",
    "relative_error",
    "simulate",
    "simulate_batch",
    "simulate_image_pair",
    "steady_state_fraction",
    "whole_steps",
]
