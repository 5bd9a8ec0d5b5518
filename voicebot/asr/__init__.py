"""Speech recognisers: the embedded Whisper backend and the streaming Vosk backend."""
