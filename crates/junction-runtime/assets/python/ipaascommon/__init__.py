"""Helpers shared by Integration Service steps (spec 004): exceptions and small utilities."""
