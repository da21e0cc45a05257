"""facerecon.train."""
