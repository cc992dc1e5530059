"""Raster datasets: register a file, make it a COG, tile it into Lance, index it, gate on checks.

The flywheel's own VHR chips are cut by the same tiling code (`flywheel_core.imagery.vhr_chips`)
and each chipped scene is recorded in the same `raster_datasets` table, so there is one way a
raster becomes tiles.
"""
