"""The swarm: N llama-server processes of one plan, kept alive, and what ``ps`` and ``down`` read.

By role, each module a step of the way from a plan to running processes (data flows down)::

    spec        plan -> per-instance settings (InstanceConfig, SwarmSpec): plain data
    argv        an InstanceConfig + a port -> llama-server's argv and environment (pure)
    system      ports, log files, process identity, process-group signals (OS helpers)
    instance    one llama-server: spawn, readiness, stop, its state machine
    health      crash windows, backoff, memory readings
    record      RunRecord: what the run file holds, typed; read and written as JSON only here
    runfile     the run file on disk: path, lock, liveness, claim, what `ps` shows
    teardown    `swarm down`: stop a swarm from its run file, or without one
    writer      the supervisor's run-file writes, off the event loop
    events      what the supervisor reports, in types it owns (InstanceEvent, StatusEvent, Traffic)
    supervisor  the health loop over all instances; reports each change to one callback
    status      what the supervisor reports: its RunRecord and the live status
    probe       GET /health over a fresh loopback connection (plain asyncio)
    relaunch    a remembered launch: the key of what decides it, the record, its checks
    launcher    what `swarm up` does: build the spec, start the background process, wait
    boot        the background process's entry: spawns the instances, then loads the daemon
    daemon      the background process: the ONLY module here that imports the proxy; it wires
                the supervisor's events into the proxy's UpstreamPool

Nothing is imported here: `swarm ps` loads only the run file's modules.
"""
