"""Checks of the techniques library: test_<module>.py checks impl/techniques/<module>.py."""
