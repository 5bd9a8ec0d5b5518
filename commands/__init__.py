"""The `voicebot` command: the composition that wires the core (``voicebot``), the FAQ,
telephony and the web app together. It sits above every other package, so that the
core never imports the layers around it."""
