"""facerecon.detect."""
