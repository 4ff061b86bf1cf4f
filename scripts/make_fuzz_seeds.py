"""Writes the two GGUF seeds of the GGUF fuzzer (.fuzz/gguf/seeds): tiny 1-layer Llama models with a byte-level
BPE and a SentencePiece vocabulary of 32 tokens and a chat template, ~5 KB each, both runnable by `rocketkv`.
Usage: python scripts/make_fuzz_seeds.py DIR   (needs gguf and numpy; scripts/fuzz.sh writes them into .fuzz/gguf/seeds)"""
import numpy as np, gguf, sys
def write(path, tok_model):
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("fuzz seed"); w.add_block_count(1); w.add_context_length(64); w.add_embedding_length(8)
    w.add_feed_forward_length(16); w.add_head_count(2); w.add_head_count_kv(1); w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    toks = ["<unk>","<s>","</s>"] + [chr(c) for c in range(97,123)] + ["ab","▁a","<0x0A>"]
    if tok_model == "gpt2":
        toks = ["<|endoftext|>","<|im_start|>","<|im_end|>"] + [chr(c) for c in range(97,123)] + ["ab","Ġa","Ċ"]
        w.add_tokenizer_model("gpt2"); w.add_tokenizer_pre("default"); w.add_token_merges(["a b","Ġ a"])
        types=[3,3,3]+[1]*29
    else:
        w.add_tokenizer_model("llama"); w.add_token_scores([0.0]*3+[-float(i) for i in range(29)])
        types=[2,3,3]+[1]*28+[6]
    w.add_token_list(toks); w.add_token_types(types); w.add_bos_token_id(1); w.add_eos_token_id(2)
    w.add_chat_template("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    rng=np.random.default_rng(0); V=len(toks)
    def t(n, shape): w.add_tensor(n, rng.standard_normal(shape).astype(np.float32))
    t("token_embd.weight",(V,8)); t("output_norm.weight",(8,)); t("blk.0.attn_norm.weight",(8,)); t("blk.0.ffn_norm.weight",(8,))
    t("blk.0.attn_q.weight",(8,8)); t("blk.0.attn_k.weight",(4,8)); t("blk.0.attn_v.weight",(4,8)); t("blk.0.attn_output.weight",(8,8))
    t("blk.0.ffn_gate.weight",(16,8)); t("blk.0.ffn_up.weight",(16,8)); t("blk.0.ffn_down.weight",(8,16))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
write(sys.argv[1]+"/llama-gpt2.gguf","gpt2"); write(sys.argv[1]+"/llama-spm.gguf","llama")
