"""MOSS family processing."""
