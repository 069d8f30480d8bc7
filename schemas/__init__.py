"""The Avro wire contract between edge and centre: schemas (``*.avsc``), the codec
(:mod:`schemas.codec`) and the RTP column packing (:mod:`schemas.rtp_columns`)."""
