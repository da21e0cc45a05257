"""facerecon.io."""
