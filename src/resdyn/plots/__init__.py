"""Figures: one module per study, drawing from tidy tables only (plots never compute)."""
