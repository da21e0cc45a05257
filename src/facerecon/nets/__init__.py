"""facerecon.nets."""
