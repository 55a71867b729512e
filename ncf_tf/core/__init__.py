"""Shared plumbing with no ncf_tf imports: atomic file writes and JSON run records."""
