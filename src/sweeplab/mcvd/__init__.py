"""Molecular communication via diffusion near a reflecting plane (spec: mcvd.md).

Units: µm, s, µm²/s. The reflecting plane is ``x = 0`` and the fluid is ``x >= 0``.
"""

from .analytic import (
    MODELS,
    absorbed_fraction,
    erfc_terms,
    hitting_rate,
    image_charges,
    steady_state_fraction,
)
from .geometry import Geometry
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
    "CORRECTIONS",
    "MODELS",
    "Geometry",
    "SimulationResult",
    "absorbed_fraction",
    "binned_hitting_rate",
    "combine",
    "cumulative_fraction",
    "erfc_terms",
    "hitting_rate",
    "image_charges",
    "plan_batches",
    "simulate",
    "simulate_batch",
    "simulate_image_pair",
    "steady_state_fraction",
]
