"""Not done yet."""
