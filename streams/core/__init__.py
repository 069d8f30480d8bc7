"""The pure centre: SIP dialogs -> media bindings, RTP -> per-speaker audio, STT framing, call documents.

Synchronous and free of I/O: no Faust, Kafka, asyncio, sockets or clocks (time is always capture time
passed in). The Faust agents and the offline ``spanscribe transcribe`` drive the same objects:

- :class:`DialogTracker` (SipMessage dicts -> MediaBinding / CallEvent records)
- :class:`MediaJoiner` (MediaBinding + RtpBatch dicts -> :class:`AudioChunk`, :class:`StreamEnded`, :class:`Note`)
- :class:`VoskSession` (STT websocket framing; segments via ``stt_protocol.to_segment``)
- :class:`CallAssembler` (TranscriptSegment + CallEvent dicts -> CallTranscript dicts)

Everything else (codecs, jitter buffer, binding index) is reachable through its submodule.
"""
from __future__ import annotations

from .assembler import AssemblerConfig, CallAssembler
from .dialog import BindingOut, CallEventOut, DialogConfig, DialogTracker, SpeakerMap
from .media import AudioChunk, MediaJoiner, Note, StreamEnded
from .stt_protocol import VoskSession

__all__ = ["AssemblerConfig", "AudioChunk", "BindingOut", "CallAssembler", "CallEventOut", "DialogConfig",
           "DialogTracker", "MediaJoiner", "Note", "SpeakerMap", "StreamEnded", "VoskSession"]
