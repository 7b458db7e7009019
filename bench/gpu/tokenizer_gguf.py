"""Write a tokenizer-only GGUF (no tensors) from a real GGUF, for make_stub_gguf.py's
``--tokenizer-from`` on a machine that should not carry the whole model.

    python bench/gpu/tokenizer_gguf.py SmolLM2-135M-Instruct.Q4_1.gguf tok.gguf
"""

from __future__ import annotations

import sys

import gguf


def main(src: str, out: str) -> None:
    r = gguf.GGUFReader(src)

    def strings(key: str) -> list[str]:
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8", "replace") for i in f.data]

    w = gguf.GGUFWriter(out, "llama")
    w.add_tokenizer_model("gpt2")
    w.add_token_list(strings("tokenizer.ggml.tokens"))
    f = r.fields["tokenizer.ggml.token_type"]
    w.add_token_types([int(f.parts[i][0]) for i in f.data])
    w.add_token_merges(strings("tokenizer.ggml.merges"))
    w.add_eos_token_id(int(r.fields["tokenizer.ggml.eos_token_id"].parts[-1][0]))
    if "tokenizer.chat_template" in r.fields:
        w.add_chat_template(bytes(r.fields["tokenizer.chat_template"].parts[-1]).decode())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
