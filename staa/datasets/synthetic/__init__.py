"""The built-in synthetic emotional-speech corpus, spoken by espeak-ng."""
