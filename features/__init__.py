"""Feature definitions, offline Delta feature tables, point-in-time training sets and Feast online serving."""
