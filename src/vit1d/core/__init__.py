"""Foundations every stage reads, torch-free: errors, atomic writes, paths, provenance,
fault points for the interruption tests, optional-dependency errors, the allocator setting
that keeps freed memory in the process."""
