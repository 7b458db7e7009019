"""The proxy: an OpenAI-compatible endpoint in front of the swarm's llama-server instances.

Import from the modules (this package stays light so ``upstreams`` costs nothing to import)::

    from swarm_supervisor.proxy.app import create_app
    from swarm_supervisor.proxy.server import ProxyServer
    from swarm_supervisor.proxy.settings import ProxySettings
    from swarm_supervisor.proxy.upstreams import UpstreamPool

    pool = UpstreamPool.from_urls(["http://127.0.0.1:9001", "http://127.0.0.1:9002"])
    app = create_app(pool, ProxySettings.from_config(config.proxy, voters=pool.voters))
    async with ProxyServer(app, port=8000) as server:
        ...
"""
