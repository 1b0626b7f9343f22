"""The audio front end: the time-frequency grid (torch-free) and the log-mel transform."""
