"""The TTS engine: coqui-tts acoustic model glued to a gruut front end and a WORLD vocoder."""
