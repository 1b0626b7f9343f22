"""The model: ViT-1D, its safetensors checkpoints, and the device and precision choice."""
