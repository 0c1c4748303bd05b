"""The engine's logits for every position of a prompt, fed in given chunk sizes (one
shot when chunks is None), for comparison with a NumPy reference."""

from offload import N_GPU_LAYERS
from selfextend_gguf import Llama


def engine_logits(model_path, tokens, chunks=None, **options):
    options.setdefault("n_gpu_layers", N_GPU_LAYERS)
    # flash attention only where a test asks for it: the reference tolerances are those of
    # f32 attention, and llama.cpp's flash attention rounds queries to f16
    options.setdefault("flash_attn", False)
    llm = Llama(str(model_path), logits_all=True, **options)
    if chunks is None:
        llm.eval(tokens)
    else:
        start = 0
        for size in chunks:
            llm.eval(tokens[start:start + size])
            start += size
        assert start == len(tokens)
    return llm.scores[:len(tokens)].copy()
