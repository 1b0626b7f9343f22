"""Foundations every stage reads, torch-free: errors, atomic writes, paths, provenance,
fault points for the interruption tests, optional-dependency errors."""
