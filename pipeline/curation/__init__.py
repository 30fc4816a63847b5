"""Cutting intervals into clips, and the CNAS filters of Appendix C with their report."""
