"""snnrobust: train spiking neural networks and measure, reliably, how robust they are."""

__version__ = "0.1.0"
