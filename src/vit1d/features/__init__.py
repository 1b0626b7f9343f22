"""Features of a frozen model: windowing, the feature cache, extraction, the HEAR API."""
