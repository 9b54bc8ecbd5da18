"""Data key rotation: re-sealing stored personal data under the current key."""
