"""facewire: a distributed face-recognition pipeline on MQTT."""

__version__ = "0.1.0"
