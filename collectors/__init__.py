"""Collectors observe the world and return statements; they never touch SQL."""
