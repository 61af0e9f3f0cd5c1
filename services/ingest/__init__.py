"""Ingest: every upload path, validation, content hashing and dedupe, blob writes, serving."""
