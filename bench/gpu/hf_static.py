#!/usr/bin/env python3
"""Hugging Face transformers generate() with static batches: the "traditional"
serving baseline that `make bench-gpu` puts beside pinferd's continuous batching.

A randomly initialised LlamaForCausalLM of a named shape serves the ShareGPT
(prompt_len, output_len) workload in bench/data/sharegpt_lengths.tsv. Requests
are cut, in arrival order, into batches of --batch; each batch is left-padded to
its longest prompt and generated greedily until its longest request is done
(min_new_tokens = max_new_tokens, EOS ignored), which is how a static-batching
server spends the GPU. Only each request's own output_len counts as useful
output, as in the vLLM paper's comparison; the raw generated count is printed too.

Exit status 77 means "skipped": torch/transformers missing, or no CUDA device
when --device cuda (the default) was asked for.
"""

import argparse
import gc
import sys
import time
from pathlib import Path

SKIP = 77  # automake's "test skipped", what make test-gpu/bench-gpu understand

# Shapes only; weights are random. rope scaling (llama3's "llama3" rope type)
# is left out: it changes no FLOP or byte the benchmark measures.
PRESETS = {
    "llama3-8b": dict(vocab_size=128256, hidden_size=4096, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8,
                      intermediate_size=14336, rope_theta=500000.0,
                      rms_norm_eps=1e-5, tie_word_embeddings=False,
                      max_position_embeddings=8192),
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3,
                         intermediate_size=1536, rope_theta=100000.0,
                         rms_norm_eps=1e-5, tie_word_embeddings=True,
                         max_position_embeddings=8192),
    # Small enough for a 2-core CPU to run a few dozen requests in seconds.
    "tiny": dict(vocab_size=512, hidden_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, rope_theta=10000.0,
                 rms_norm_eps=1e-5, tie_word_embeddings=False,
                 max_position_embeddings=4096),
}

DEFAULT_DATA = Path(__file__).resolve().parent.parent / "data" / "sharegpt_lengths.tsv"


def batch_list(text):
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}")
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers: {text!r}")
    return sizes


def device_name(text):
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"must be cuda, cuda:N or cpu, not {text!r}")


def positive_int(text):
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return v


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="hf_static.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__,
        epilog="""\
output:
  Per batch size a human-readable block, then one line for scripts:
    hf_static preset=P dtype=D batch=B status=S requests=N output_tokens=U
      generated_tokens=G prompt_tokens=T seconds=W output_tok_s=U/W
      total_tok_s=(T+U)/W peak_mem_gib=M batches=K requested=R
  status: ok (all R requests ran), partial (--time-limit stopped it; the
  numbers cover the N requests that ran, nothing is extrapolated),
  oom (CUDA ran out of memory; no throughput is given), skipped (no time left).

examples:
  python3 bench/gpu/hf_static.py --preset llama3-8b --dtype float16 --requests 500 --batch 128
  python3 bench/gpu/hf_static.py --preset smollm2-135m --batch 32,128,256
  python3 bench/gpu/hf_static.py --preset tiny --device cpu --requests 24 --batch 4,8 --max-output 32
""")
    p.add_argument("--preset", choices=sorted(PRESETS), default="llama3-8b",
                   help="model shape (default: %(default)s); weights are random")
    p.add_argument("--dtype", choices=["auto", "float16", "bfloat16", "float32"], default="auto",
                   help="weight/activation dtype (default auto: float16 on cuda, float32 on cpu)")
    p.add_argument("--device", type=device_name, default="cuda",
                   help="cuda, cuda:N or cpu (default: cuda; exits 77 if no CUDA device)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="TSV of prompt_len<TAB>output_len, '#' comments (default: %(default)s)")
    p.add_argument("--requests", type=positive_int, default=1000,
                   help="take the first N pairs of the TSV (default: %(default)s)")
    p.add_argument("--max-prompt", type=positive_int, default=None,
                   help="cap each prompt length at this many tokens")
    p.add_argument("--max-output", type=positive_int, default=None,
                   help="cap each output length at this many tokens")
    p.add_argument("--batch", type=batch_list, default=[128],
                   help="static batch size, or a comma-separated sweep like 32,128,256 (default: 128)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for prompt token ids and weights (default: %(default)s)")
    p.add_argument("--time-limit", type=float, default=480.0,
                   help="seconds since start after which no new batch is started; also a batch "
                        "is not started if it is predicted to end past the limit (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no per-batch progress lines")
    return p.parse_args(argv)


def load_pairs(path, n, max_prompt, max_output):
    pairs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise SystemExit(f"{path}:{lineno}: expected prompt_len<TAB>output_len")
            pl, ol = int(fields[0]), int(fields[1])
            if max_prompt is not None:
                pl = min(pl, max_prompt)
            if max_output is not None:
                ol = min(ol, max_output)
            # generate() needs at least one prompt token and one new token.
            pairs.append((max(pl, 1), max(ol, 1)))
            if len(pairs) == n:
                break
    return pairs


def skip(msg):
    print(f"hf_static.py: skipped: {msg}", file=sys.stderr)
    sys.exit(SKIP)


def build_model(torch, LlamaConfig, LlamaForCausalLM, preset, dtype, device, seed, max_len):
    shape = dict(PRESETS[preset])
    shape["max_position_embeddings"] = max(shape["max_position_embeddings"], max_len)
    # eos None: a random model emits token 2 now and then, and a static batch
    # must run every row to the batch's max_new_tokens anyway.
    config = LlamaConfig(**shape, bos_token_id=1, eos_token_id=None, pad_token_id=0,
                         hidden_act="silu", attention_bias=False, mlp_bias=False,
                         use_cache=True)
    # The setter exists in transformers 4.36+ and 5.x; "sdpa" is what
    # from_pretrained picks by default on a GPU, i.e. the untuned baseline.
    config._attn_implementation = "sdpa"

    # Build directly on the target device in the target dtype (what
    # from_config(torch_dtype=...) does inside), so an 8B fp16 model is
    # 16 GB of GPU memory and never 32 GB of fp32 on the host.
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(old_dtype)
    model.to(dtype=dtype)  # no-op when construction honoured the default dtype

    # Our own seeded init, on the device: whether and how transformers
    # initialises weights in __init__ differs between versions (5.x may skip
    # it), and uninitialised memory could hold NaNs/infs.
    gen = torch.Generator(device=torch.device(device)).manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.02, generator=gen)
            elif "norm" in name:
                param.fill_(1.0)
            else:
                param.zero_()
    model.eval()

    gen_cfg = model.generation_config
    gen_cfg.eos_token_id = None
    gen_cfg.pad_token_id = 0
    gen_cfg.bos_token_id = 1
    # A default generation config may carry sampling knobs; greedy it is.
    for knob, val in (("do_sample", False), ("num_beams", 1), ("temperature", 1.0),
                      ("top_p", 1.0), ("top_k", 50)):
        if hasattr(gen_cfg, knob):
            setattr(gen_cfg, knob, val)
    return model


def make_batch(torch, prompts, device):
    """Left-pad (decoder-only generate() needs the new tokens flush right)."""
    longest = max(p.numel() for p in prompts)
    ids = torch.zeros((len(prompts), longest), dtype=torch.long)
    mask = torch.zeros((len(prompts), longest), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, longest - p.numel():] = p
        mask[row, longest - p.numel():] = 1
    return ids.to(device), mask.to(device)


def generate(model, ids, mask, new_tokens):
    # Keyword names exist in transformers 4.26+ and 5.x. min_new_tokens ==
    # max_new_tokens keeps every row going even if an EOS id were set.
    return model.generate(input_ids=ids, attention_mask=mask,
                          max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                          do_sample=False, num_beams=1, eos_token_id=None,
                          pad_token_id=0, use_cache=True)


def main(argv):
    t_start = time.monotonic()
    args = parse_args(argv)

    if not args.data.is_file():
        print(f"hf_static.py: no workload file {args.data}", file=sys.stderr)
        return 2
    pairs = load_pairs(args.data, args.requests, args.max_prompt, args.max_output)
    if not pairs:
        print(f"hf_static.py: no (prompt_len, output_len) pairs in {args.data}", file=sys.stderr)
        return 2

    try:
        import torch
    except Exception as e:  # OSError too: a torch wheel with missing CUDA libs
        skip(f"cannot import torch ({type(e).__name__}: {e})")
    try:
        import transformers
        from transformers import LlamaConfig, LlamaForCausalLM
    except Exception as e:
        skip(f"cannot import transformers ({type(e).__name__}: {e})")

    device = args.device
    on_cuda = device.startswith("cuda")
    if on_cuda:
        if not torch.cuda.is_available():
            skip("no CUDA device (torch.cuda.is_available() is false); use --device cpu to run on the CPU")
        device = torch.device(device)
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")

    dtype_name = args.dtype if args.dtype != "auto" else ("float16" if on_cuda else "float32")
    dtype = getattr(torch, dtype_name)

    transformers.logging.set_verbosity_error()  # per-call generate() warnings would drown the report
    torch.manual_seed(args.seed)

    n_req = len(pairs)
    if n_req < args.requests:
        print(f"note: {args.data} has only {n_req} pairs; using all of them")
    prompt_lens = [p for p, _ in pairs]
    output_lens = [o for _, o in pairs]
    max_len = max(prompt_lens) + max(output_lens) + 8

    devname = torch.cuda.get_device_name(device) if on_cuda else "cpu"
    print(f"hf_static_env torch={torch.__version__} transformers={transformers.__version__} "
          f"device={device} gpu={devname.replace(' ', '_')} preset={args.preset} dtype={dtype_name} "
          f"attn=sdpa python={sys.version.split()[0]}")
    print(f"workload: {n_req} requests from {args.data}, prompt tokens {sum(prompt_lens)} "
          f"(max {max(prompt_lens)}), useful output tokens {sum(output_lens)} (max {max(output_lens)})"
          + (f", prompts capped at {args.max_prompt}" if args.max_prompt else "")
          + (f", outputs capped at {args.max_output}" if args.max_output else ""))

    t0 = time.monotonic()
    model = build_model(torch, LlamaConfig, LlamaForCausalLM, args.preset, dtype, device,
                        args.seed, max_len)
    if on_cuda:
        torch.cuda.synchronize(device)
    n_params = sum(p.numel() for p in model.parameters())
    weights_gib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    print(f"model: {args.preset}, {n_params / 1e6:.1f}M parameters, {weights_gib:.2f} GiB of weights, "
          f"attn={getattr(model.config, '_attn_implementation', '?')}, built in {time.monotonic() - t0:.1f}s")

    # Prompts: random ids, seeded, made once so every batch size serves the
    # very same requests. Ids from 3 up keep clear of pad(0)/bos(1)/eos(2);
    # a trailing pad id would make generate() warn about right padding.
    cpu_gen = torch.Generator().manual_seed(args.seed)
    vocab = PRESETS[args.preset]["vocab_size"]
    prompts = [torch.randint(3, vocab, (pl,), generator=cpu_gen, dtype=torch.long) for pl in prompt_lens]

    # Warm-up (not timed): CUDA context, cuBLAS handles, allocator pools, the
    # padded-mask attention path. A few short rows of unequal length suffice.
    warm = [prompts[i % n_req][: 128 - 16 * i] for i in range(4)]
    ids, mask = make_batch(torch, warm, device)
    generate(model, ids, mask, 8)
    del ids, mask
    if on_cuda:
        torch.cuda.synchronize(device)

    results = []
    out_of_time = False
    prev_sec_per_step = None
    for bs in args.batch:
        batches = [list(range(i, min(i + bs, n_req))) for i in range(0, n_req, bs)]
        res = dict(batch=bs, status="ok", requests=0, output_tokens=0, generated_tokens=0,
                   prompt_tokens=0, padded_prompt_tokens=0, seconds=0.0, batches=0,
                   peak_mem_gib=None, note="")
        if out_of_time:
            res["status"] = "skipped"
            results.append(res)
            report(args, dtype_name, n_req, res)
            continue
        print(f"\n== batch size {bs}: {len(batches)} batches ==", flush=True)
        if on_cuda:
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.synchronize(device)
        # Seconds per generated step (prefill folded in), the worst seen at
        # this batch size: predicts whether the next batch ends in time. The
        # first batch of a size borrows the previous size's figure (an
        # underestimate when the size grows, better than none).
        sec_per_step = prev_sec_per_step
        t_bs = time.monotonic()
        for bi, idx in enumerate(batches):
            new_tokens = max(output_lens[i] for i in idx)
            elapsed = time.monotonic() - t_start
            predicted = sec_per_step * new_tokens if sec_per_step else 0.0
            if elapsed + predicted > args.time_limit:
                out_of_time = True
                res["status"] = "partial" if res["requests"] else "skipped"
                res["note"] = (f"--time-limit {args.time_limit:g}s: stopped before batch {bi + 1}/{len(batches)} "
                               f"({elapsed:.0f}s elapsed, next batch predicted {predicted:.0f}s); "
                               f"measured {res['requests']} of {n_req} requests")
                break
            t_b = time.monotonic()
            oom = None
            try:
                ids, mask = make_batch(torch, [prompts[i] for i in idx], device)
                out = generate(model, ids, mask, new_tokens)
                if on_cuda:
                    torch.cuda.synchronize(device)
                generated = (out.shape[1] - ids.shape[1]) * out.shape[0]
                padded = ids.numel()
            except torch.cuda.OutOfMemoryError as e:
                oom = str(e).splitlines()[0] if str(e) else "CUDA out of memory"
            # Outside the handler, so the traceback (and the tensors its frames
            # hold) is gone before the allocator cache is emptied.
            ids = mask = out = None
            if oom is not None:
                gc.collect()
                if on_cuda:
                    torch.cuda.empty_cache()
                res["status"] = "oom"
                res["note"] = (f"CUDA out of memory in batch {bi + 1}/{len(batches)} "
                               f"({len(idx)} requests, {new_tokens} new tokens): {oom}")
                print(f"OOM: batch size {bs} ran out of CUDA memory at batch {bi + 1}/{len(batches)}; "
                      f"going on with the next batch size", flush=True)
                break
            dt = time.monotonic() - t_b
            this_step = dt / new_tokens
            sec_per_step = this_step if res["batches"] == 0 else max(sec_per_step, this_step)
            useful = sum(output_lens[i] for i in idx)
            res["requests"] += len(idx)
            res["batches"] += 1
            res["output_tokens"] += useful
            res["generated_tokens"] += generated
            res["prompt_tokens"] += sum(prompt_lens[i] for i in idx)
            res["padded_prompt_tokens"] += padded
            if not args.quiet:
                print(f"  batch {bi + 1}/{len(batches)}: {len(idx)} requests, prompt pad to "
                      f"{padded // len(idx)}, {new_tokens} new tokens, {useful}/{generated} useful, "
                      f"{dt:.2f}s", flush=True)
        if on_cuda:
            torch.cuda.synchronize(device)
        # Wall time of the batches that ran (an OOM'd batch's time is dropped).
        res["seconds"] = time.monotonic() - t_bs if res["status"] != "oom" else 0.0
        if res["batches"]:
            prev_sec_per_step = sec_per_step
        if on_cuda:
            res["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        results.append(res)
        report(args, dtype_name, n_req, res)

    print("\nsummary (useful = each request's own output_len; generated = rows x batch max_new_tokens):")
    print(f"  {'batch':>6} {'status':>8} {'requests':>8} {'useful':>9} {'generated':>10} "
          f"{'seconds':>9} {'out tok/s':>10} {'total tok/s':>11} {'peak GiB':>9}")
    for r in results:
        s = r["seconds"]
        print(f"  {r['batch']:>6} {r['status']:>8} {r['requests']:>8} {r['output_tokens']:>9} "
              f"{r['generated_tokens']:>10} {s:>9.2f} "
              f"{(r['output_tokens'] / s if s > 0 else 0):>10.1f} "
              f"{((r['prompt_tokens'] + r['output_tokens']) / s if s > 0 else 0):>11.1f} "
              f"{(format(r['peak_mem_gib'], '.2f') if r['peak_mem_gib'] is not None else 'n/a'):>9}")
    print(f"total wall time {time.monotonic() - t_start:.1f}s")
    return 0


def report(args, dtype_name, n_req, r):
    s = r["seconds"]
    peak = f"{r['peak_mem_gib']:.2f}" if r["peak_mem_gib"] is not None else "na"
    if r["status"] in ("ok", "partial"):
        out_s = r["output_tokens"] / s if s > 0 else 0.0
        tot_s = (r["prompt_tokens"] + r["output_tokens"]) / s if s > 0 else 0.0
        gen = r["generated_tokens"]
        print(f"requests {r['requests']} of {n_req} in {r['batches']} batches of up to {r['batch']}")
        print(f"useful output tokens {r['output_tokens']}, generated tokens {gen} "
              f"({(100.0 * r['output_tokens'] / gen if gen else 0):.1f}% useful), "
              f"prompt tokens {r['prompt_tokens']} (padded to {r['padded_prompt_tokens']})")
        print(f"wall {s:.2f}s: {out_s:.1f} useful output tok/s, {tot_s:.1f} total tok/s, "
              f"{(gen / s if s > 0 else 0):.1f} generated tok/s, peak GPU memory " + (f"{peak} GiB" if r["peak_mem_gib"] is not None else "n/a (cpu)"))
        if r["note"]:
            print(f"note: {r['note']}")
        print(f"hf_static preset={args.preset} dtype={dtype_name} batch={r['batch']} status={r['status']} "
              f"requests={r['requests']} output_tokens={r['output_tokens']} generated_tokens={gen} "
              f"prompt_tokens={r['prompt_tokens']} seconds={s:.3f} output_tok_s={out_s:.1f} "
              f"total_tok_s={tot_s:.1f} peak_mem_gib={peak} batches={r['batches']} requested={n_req}",
              flush=True)
    else:
        if r["note"]:
            print(f"note: {r['note']}")
        print(f"hf_static preset={args.preset} dtype={dtype_name} batch={r['batch']} status={r['status']} "
              f"requests={r['requests']} requested={n_req} peak_mem_gib={peak}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
