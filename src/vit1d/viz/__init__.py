"""Figures and explorers: every figure of the book and the interactive widgets."""
