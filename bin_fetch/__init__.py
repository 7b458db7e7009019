"""Find or get a runnable ``llama-server`` (or ``mlx_lm.server``). A leaf: never imports swarm_supervisor."""
