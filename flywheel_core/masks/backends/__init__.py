"""Mask back ends: each turns one chip's pixels and pixel-space prompts into raw masks."""
