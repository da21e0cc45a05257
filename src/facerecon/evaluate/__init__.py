"""facerecon.evaluate."""
