"""Monitoring: drift and live model performance over the scoring tables, and their report."""
