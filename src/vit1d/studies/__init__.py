"""Studies built on pretraining and probing: the recipe study and the reference
checkpoint's export."""
