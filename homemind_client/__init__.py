"""Typed async client of the Home Mind cloud API. Imports neither Home Assistant nor the server."""

__version__ = "0.1.0"
