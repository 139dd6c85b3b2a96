"""Feature definitions, offline Delta feature tables and Feast online serving (not built yet)."""
