"""Tests of the home_mind integration (HA harness, fake Home Mind server on 127.0.0.1)."""
