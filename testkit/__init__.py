"""Test support shared by ``tests/`` and ``bench/``: fake servers and child-process helpers.

Neither ``tests/`` nor ``bench/`` is a package the other may reach into; both import this one
(a top-level package beside them, importable wherever the repository root is on ``sys.path``:
the editable install puts it there, and pytest's ``pythonpath``). It is not shipped in the wheel.

    testkit.llama            the fake llama-server: one surface, three transports
        .surface             what it answers (Behaviour: the fault switches), pure, stdlib only
        .inprocess           Starlette + uvicorn in a thread: fake_upstreams(), Record
        .server              a process with llama-server's argv (FAKE_LLAMA_SERVER), process faults
        .fast                canned bytes on raw uvloop + httptools, for the overhead benchmark
    testkit.spawn            child processes that print their URL: fakes, the proxy, llama-server
    testkit.hub_server       huggingface_hub's download API, with faults
    testkit.release_server   GitHub's release API for bin_fetch, with faults
"""
