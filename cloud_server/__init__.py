"""Home Mind cloud server: aiohttp service between Home Assistant and Claude."""

__version__ = "0.1.0"
