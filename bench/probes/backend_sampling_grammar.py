"""Does llama-server sample on the GPU (``--backend-sampling``) for a request with ``tools``?

Not when the model's chat template can call tools: llama-server then builds a (lazy) grammar for
the tool calls, and a request with a grammar samples on the host. The stand-in models carry
SmolLM2's template, which cannot call tools, so this probe gives one a small template of its own
that can (a ``<tool_call>`` section, as Qwen2.5-Coder's has) and reads llama-server's log:

    python bench/probes/backend_sampling_grammar.py MODEL.gguf   # e.g. a make_stub_gguf.py stand-in

It prints, per request (with and without ``tools``), whether llama-server warned that it turned
sampling on the GPU off because of a grammar ("backend sampling is not compatible with grammar").
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.quality_gen import start_server, stop_server
from bench.topology import find_binary

TEMPLATE = """{%- if tools %}<|im_start|>system
You can call these functions:
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>
Reply with a call as <tool_call>{"name": NAME, "arguments": ARGS}</tool_call>.<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'user' %}<|im_start|>user
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{% if message.content %}{{ message.content }}{% endif %}
{%- if message.tool_calls %}{% for tc in message.tool_calls %}
<tool_call>
{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments | tojson }}}
</tool_call>{% endfor %}{% endif %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}
"""

TOOLS = [{"type": "function", "function": {"name": "read", "description": "Read a file", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}]  # fmt: skip


def main(model: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.jinja"
        template.write_text(TEMPLATE)
        extra = ["--backend-sampling", "--jinja", "--chat-template-file", str(template), "-ngl", "0", "-v"]
        server = start_server(find_binary(None), model, 2, 4096, Path(tmp), extra=extra)
        try:
            for tools in (TOOLS, None):
                before = server.log.stat().st_size
                body = {"messages": [{"role": "user", "content": "read a.txt"}], "max_tokens": 4}
                body |= {"tools": tools} if tools else {}
                status = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120).status_code
                time.sleep(1.0)  # the slot's log lines can come after the answer
                with server.log.open("rb") as f:
                    f.seek(before)
                    log = f.read().decode(errors="replace")
                off = "backend sampling is not compatible with grammar" in log
                print(f"tools={bool(tools)}: {status}, sampling on the GPU turned off for a grammar: {off}")
        finally:
            stop_server(server)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
