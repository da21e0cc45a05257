"""facerecon.data."""
