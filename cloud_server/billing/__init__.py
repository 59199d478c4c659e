"""Home Mind cloud server: billing."""
