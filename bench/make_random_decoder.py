"""A random-weight decoder of a real model's shape, written by PyTorch as a Hugging Face folder
(config.json, bf16 safetensors, the tokenizer files of --tokenizer): what bench/gpu_vs_torch.sh
trains with both tools. Nothing is downloaded; weights use transformers' own initialisation
(normal, std 0.02) under torch.manual_seed(0).

  python bench/make_random_decoder.py --shape qwen2-1.5b --tokenizer models/smollm2-tokenizer --out DIR
  python bench/make_random_decoder.py --export-tokenizer models/SmolLM2-135M-Instruct/*.gguf \
      --out models/smollm2-tokenizer     # the tokenizer folder, made once where the GGUF is
"""
import argparse
import os
import shutil

SHAPES = {
    "tiny": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=49152, tie_word_embeddings=True,
                 rope_theta=10000.0, max_position_embeddings=2048, rms_norm_eps=1e-5),
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True,
                         rope_theta=100000.0, max_position_embeddings=8192, rms_norm_eps=1e-5),
    "qwen2-1.5b": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                       num_attention_heads=12, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
                       rope_theta=1000000.0, max_position_embeddings=32768, rms_norm_eps=1e-6),
    "llama3-8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False,
                      rope_theta=500000.0, max_position_embeddings=8192, rms_norm_eps=1e-5),
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES))
    p.add_argument("--tokenizer", help="folder with tokenizer.json (its ids must fit the vocabulary)")
    p.add_argument("--export-tokenizer", metavar="GGUF",
                   help="write the GGUF file's tokenizer (as bftkit reads it) to --out instead")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    if args.export_tokenizer:
        import sys

        from transformers import AutoTokenizer

        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from knowledge_vs_transformers import restore_digit_splitting

        folder, name = os.path.split(args.export_tokenizer)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        restore_digit_splitting(tok, args.export_tokenizer)
        tok.save_pretrained(args.out)
        print(f"tokenizer of {name} -> {args.out}")
        return
    if not (args.shape and args.tokenizer):
        p.error("--shape and --tokenizer are needed (or --export-tokenizer)")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = dict(SHAPES[args.shape])
    cfg = AutoConfig.for_model(kw.pop("model_type"), **kw)
    torch.manual_seed(0)
    device = args.device if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(args.out, safe_serialization=True, max_shard_size="5GB")
    for name in os.listdir(args.tokenizer):
        if name.startswith("tokenizer") or name == "special_tokens_map.json":
            shutil.copy(os.path.join(args.tokenizer, name), args.out)
    print(f"{args.shape}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters -> {args.out}")


if __name__ == "__main__":
    main()
