"""Home Mind cloud server: chat."""
