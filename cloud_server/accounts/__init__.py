"""Home Mind cloud server: accounts."""
