"""Spatial indexing and projections: S2 and H3 ids, UTM choice, metric areas and buffers."""
