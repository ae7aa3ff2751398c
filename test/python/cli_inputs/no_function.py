"""A file without a function."""
SCALE = 0.125
