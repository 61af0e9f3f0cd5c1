"""Darkroom's common library: configuration, logging, errors, database, events, storage, HTTP."""
