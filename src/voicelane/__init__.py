"""voicelane: an ownership-first production lane for custom text-to-speech voices."""

__version__ = "0.1.0"
