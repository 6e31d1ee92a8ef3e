"""Small shared utilities: canonical hashing, atomic file writes, seeding."""
