"""Quality gates between the layers (not built yet; silver quarantine lives in lakehouse.refine)."""
