"""facerecon.render."""
