"""Home Mind cloud server: memory."""
