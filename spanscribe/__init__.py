"""spanscribe: passive, zero-touch speech-to-text for legacy call centers."""
__version__ = "0.1.0"
