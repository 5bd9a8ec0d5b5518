"""Speech synthesis: Kokoro (natural Japanese, default) and pyttsx3 (system voices)."""
