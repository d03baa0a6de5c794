"""MOSS family converters (original layout <-> codectts)."""
