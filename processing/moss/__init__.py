"""MOSS-TTS family."""
