"""Governance: how long tables keep what they no longer reference, erasing one customer everywhere, and
finding clear PII. It reads the configuration and the tables' own schemas; only the CLI imports it."""
