"""Tests inside the Home Assistant test harness."""
