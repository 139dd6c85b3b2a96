"""Tidewater's floor: configuration, the Spark session, and the bronze/silver/gold Delta layers."""

__version__ = "0.1.0"
