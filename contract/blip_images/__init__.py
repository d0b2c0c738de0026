"""Frames as pictures, for both tiers: decode with every check, resize exactly as the checkpoint's processor does.

Torch-free (Pillow and numpy), so the API tier decodes, checks and resizes a frame once, and its image carries
Pillow, not a model stack; the fleet's stubs run the same code for callers that send encoded images.
"""
