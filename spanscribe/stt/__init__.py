"""Reference speech-to-text: offline model cache and a Vosk-protocol websocket server.

Submodules are imported lazily by their users; importing this package loads nothing heavy.
"""
