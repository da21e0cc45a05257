"""facerecon.losses."""
