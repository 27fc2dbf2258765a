"""openbms: an open battery management system with a digital twin of the pack and its hardware."""

__version__ = "0.1.0"
