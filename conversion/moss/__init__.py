"""The MOSS-TTS family: audio tokenizer (codec), Delay and Local generators."""
