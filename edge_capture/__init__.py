"""Edge capturer: capture sources, link/IP/TCP reassembly, RTP batching, the Kafka producer. Never imports Faust."""
