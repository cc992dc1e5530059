"""The domain library of Lightning Lance: plain functions and classes, no Dagster imports.

Everything with logic worth testing lives here so it can be tested without an orchestrator.
"""
