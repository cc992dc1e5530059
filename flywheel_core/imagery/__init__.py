"""Imagery: the deterministic synthetic world (VHR + Sentinel-2 L2A scenes, truth, seed labels).

The synthetic world stands in for real imagery, which cannot be downloaded here; it keeps the
ground truth hidden from the flywheel so that label recall and precision can be measured.
Entry point: `flywheel_core.imagery.synthetic.generate_world`.
"""
