"""Analyses of results stores: tables, the report, the theory simulation, the performance bench."""
