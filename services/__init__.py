"""Darkroom's services, one package per domain."""
