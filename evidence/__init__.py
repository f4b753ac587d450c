"""The evidence store: canonical bytes, DSSE envelopes, an RFC 9162 log, signed checkpoints."""
