"""End to end: HA -> home_mind -> homemind_client -> the real cloud_server -> fake Claude."""
