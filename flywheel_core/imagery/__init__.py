"""Imagery that real data uses: sources behind one interface, chips, radiometry and indices.

`sources/` finds and reads scenes (synthetic world, local rasters, Core-Five, Satellogic
EarthView, Sentinel-2 L2A from a STAC API); `vhr_chips` and `msi_chips` cut and align them.
The synthetic world's generator lives in `flywheel_core.world`.
"""
