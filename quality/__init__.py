"""Quality gates between the layers: declared checks run by Great Expectations and Soda, quarantine, results."""
