"""Molecular communication via diffusion near reflecting planes (spec: mcvd.md, mcvd_exact.md).

Units: µm, s, µm²/s. The reflecting plane is ``x = 0`` and the fluid is ``x >= 0``; a slab adds a
second reflecting plane ``x = W`` (``Geometry(..., slab_width=W)``).

The names below are imported from their submodules on first use (as in :mod:`sweeplab.sweep`),
so that the sweep layer can validate a channel section (:func:`whole_steps`) without loading
scipy or numba.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:
    from .analytic import (
        ALL_MODELS,
        MODELS,
        TAU_MAX,
        ValidityWarning,
        absorbed_fraction,
        erfc_terms,
        hitting_rate,
        image_charges,
        steady_state_fraction,
        validity_limit,
    )
    from .exact import exact_absorbed_fraction, exact_hitting_rate, laplace_hitting
    from .geometry import Geometry
    from .limits import MIN_GAP_RATIO, check_exact_gap, exact_window_cost
    from .link import (
        LINK_METHODS,
        achievable_rate,
        ber,
        ber_stderr,
        clip_model_taps,
        link_taps,
        max_rate,
        optimal_threshold,
    )
    from .metrics import Estimate, isi_taps, peak, rate_nrmse, received_fraction, relative_error
    from .reactive import (
        absorption_probability,
        free_space_reactive_fraction,
        free_space_reactive_rate,
        free_space_reactive_steady_state,
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
    from .validation import whole_steps

_WHERE = {
    "absorbed_fraction": "analytic",
    "achievable_rate": "link",
    "absorption_probability": "reactive",
    "ALL_MODELS": "analytic",
    "ber": "link",
    "ber_stderr": "link",
    "binned_hitting_rate": "simulator",
    "check_exact_gap": "limits",
    "clip_model_taps": "link",
    "combine": "simulator",
    "CORRECTIONS": "simulator",
    "cumulative_fraction": "simulator",
    "erfc_terms": "analytic",
    "Estimate": "metrics",
    "exact_window_cost": "limits",
    "exact_absorbed_fraction": "exact",
    "exact_hitting_rate": "exact",
    "free_space_reactive_fraction": "reactive",
    "free_space_reactive_rate": "reactive",
    "free_space_reactive_steady_state": "reactive",
    "Geometry": "geometry",
    "hitting_rate": "analytic",
    "image_charges": "analytic",
    "isi_taps": "metrics",
    "laplace_hitting": "exact",
    "link_taps": "link",
    "LINK_METHODS": "link",
    "max_rate": "link",
    "MIN_GAP_RATIO": "limits",
    "MODELS": "analytic",
    "optimal_threshold": "link",
    "peak": "metrics",
    "plan_batches": "simulator",
    "rate_nrmse": "metrics",
    "received_fraction": "metrics",
    "relative_error": "metrics",
    "simulate": "simulator",
    "simulate_batch": "simulator",
    "simulate_image_pair": "simulator",
    "SimulationResult": "simulator",
    "steady_state_fraction": "analytic",
    "TAU_MAX": "analytic",
    "validity_limit": "analytic",
    "ValidityWarning": "analytic",
    "whole_steps": "validation",
}

__all__ = [
    "ALL_MODELS",
    "CORRECTIONS",
    "LINK_METHODS",
    "MIN_GAP_RATIO",
    "MODELS",
    "TAU_MAX",
    "Estimate",
    "Geometry",
    "SimulationResult",
    "ValidityWarning",
    "absorbed_fraction",
    "absorption_probability",
    "achievable_rate",
    "ber",
    "ber_stderr",
    "binned_hitting_rate",
    "check_exact_gap",
    "clip_model_taps",
    "combine",
    "cumulative_fraction",
    "erfc_terms",
    "exact_absorbed_fraction",
    "exact_hitting_rate",
    "exact_window_cost",
    "free_space_reactive_fraction",
    "free_space_reactive_rate",
    "free_space_reactive_steady_state",
    "hitting_rate",
    "image_charges",
    "isi_taps",
    "laplace_hitting",
    "link_taps",
    "max_rate",
    "optimal_threshold",
    "peak",
    "plan_batches",
    "rate_nrmse",
    "received_fraction",
    "relative_error",
    "simulate",
    "simulate_batch",
    "simulate_image_pair",
    "steady_state_fraction",
    "validity_limit",
    "whole_steps",
]

lazy_names(__name__, _WHERE)
