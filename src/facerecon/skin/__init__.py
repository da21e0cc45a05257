"""facerecon.skin."""
