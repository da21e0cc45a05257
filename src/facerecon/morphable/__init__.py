"""facerecon.morphable."""
