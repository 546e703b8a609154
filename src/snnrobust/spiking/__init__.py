"""Spiking primitives: surrogates, neurons, encoders, multi-step layers, state helpers."""

from .encoders import (
    ENCODERS, DirectEncoder, Encoder, LatencyEncoder, PhaseEncoder, PoissonEncoder, create_encoder, phase_bits,
)
from .functional import (
    channels_last, fused_bptt, record_membranes, reset_states, spiking_neurons, use_estimator, use_surrogate,
)
from .layers import Add, Connect, SeqToBatch
from .neurons import NEURONS, IFNode, LIFNode, SpikingNeuron
from .surrogates import SURROGATES, Surrogate, surrogate_kind

__all__ = [
    "ENCODERS", "DirectEncoder", "Encoder", "LatencyEncoder", "PhaseEncoder", "PoissonEncoder",
    "channels_last", "create_encoder", "fused_bptt", "phase_bits", "record_membranes", "reset_states",
    "spiking_neurons",
    "use_estimator", "use_surrogate", "Add", "Connect", "SeqToBatch", "NEURONS", "IFNode",
    "LIFNode", "SpikingNeuron", "SURROGATES", "Surrogate", "surrogate_kind",
]
