"""Analyses of a trained model: attention onsets, layer-wise self-similarity and
novelty, and their runner."""
