"""The synthetic world: a deterministic generator of VHR + Sentinel-2 L2A scenes, truth and seeds.

It stands in for real imagery where none can be downloaded, and keeps the ground truth hidden
from the flywheel so that label recall and precision can be measured. To the flywheel it is one
imagery source among others (`flywheel_core.imagery.sources.synthetic`).
Entry point: `flywheel_core.world.synthetic.generate_world`.
"""
