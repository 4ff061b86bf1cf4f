#!/usr/bin/env python3
"""Serving benchmark: aggregate generated tok/s and time to first token of `rocketkv serve` (or any
OpenAI-compatible server) at several concurrencies, each client sending one ~N-token conversation.

    python scripts/bench_serve.py --kv full --kv rocket:256 --concurrency 1,4,8,16 --prompt-tokens 2000 --gen 64

For each KV setting the script starts `.build/release/rocketkv serve --parallel MAX` on a free port (or uses
--url for a server already running, e.g. llama-cpp-python's), warms it up, then for each concurrency C sends C
requests at once (distinct prompts, greedy, `max_tokens` = --gen, stop strings none) and prints one JSON line:
aggregate tok/s = all generated tokens / wall time of the round; decode tok/s = first of each / (last end - first first-token); TTFT median and max;
the server's peak resident memory so far and its resident memory after the round (VmHWM, VmRSS; when its pid is
known: started here, or --pid). With --cache-ram, finished conversations stay cached, so the memory after a round
of C conversations holds all C of them. Needs httpx.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import httpx

WORDS = ("rocket engine orbit thrust fuel stage nozzle payload launch altitude gravity velocity booster "
         "capsule mission crew oxygen pressure valve turbine").split()


def prompt_text(index, tokens):
    # Roughly one token per word for this vocabulary; distinct per client so no cache is shared.
    words = [WORDS[(index * 7 + i * 13 + i // 5) % len(WORDS)] for i in range(tokens)]
    return f"Conversation {index}. " + " ".join(words) + "\nSummarize the text above in one sentence."


def one_request(url, model, kv, index, args, out):
    body = {"model": model, "messages": [{"role": "user", "content": prompt_text(index, args.prompt_tokens)}],
            "max_tokens": args.gen, "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
            "ignore_eos": True}
    if args.suppress_token:   # servers without ignore_eos (llama-cpp-python's): the end token banned by logit bias
        body["logit_bias"] = {str(t): -100 for t in args.suppress_token}
    if kv:
        body["kv"] = kv
    start = time.perf_counter()
    times, usage = [], None
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=3600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                if (choice.get("delta") or {}).get("content"):
                    times.append(time.perf_counter())
    end = time.perf_counter()
    out[index] = {"start": start, "first": times[0] if times else end, "end": end, "times": times,
                  "tokens": usage["completion_tokens"] if usage else len(times)}


def run_round(url, model, kv, concurrency, args, offset):
    out = {}
    threads = [threading.Thread(target=one_request, args=(url, model, kv, offset + i, args, out)) for i in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = list(out.values())
    wall = max(r["end"] for r in results) - t0
    tokens = sum(r["tokens"] for r in results)
    lo, hi = max(r["first"] for r in results), min(r["end"] for r in results)
    in_window = sum(lo < t <= hi for r in results for t in r["times"])
    ttft = sorted(r["first"] - r["start"] for r in results)
    return {"concurrency": concurrency, "requests": len(results), "generated_tokens": tokens,
            "aggregate_tok_s": round(tokens / wall, 2),
            "decode_tok_s": round(in_window / (hi - lo), 2) if hi > lo else None,
            "ttft_median_s": round(statistics.median(ttft), 3), "ttft_max_s": round(ttft[-1], 3), "wall_s": round(wall, 2)}


def rss_bytes(pid, field="VmHWM"):
    """The process's peak (VmHWM) or current (VmRSS) resident set in bytes, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url, proc=None):
    for _ in range(3000):
        try:
            # /health where the server has it (rocketkv, llama-server), else /v1/models (llama-cpp-python's server)
            if any(httpx.get(url + path).status_code == 200 for path in ("/health", "/v1/models")):
                return
        except httpx.TransportError:
            pass
        if proc and proc.poll() is not None:
            sys.exit("the server exited")
        time.sleep(0.1)
    sys.exit("the server did not become healthy")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kv", action="append", default=[], help="method or method:budget (repeatable; default full)")
    p.add_argument("--concurrency", default="1,4,8,16")
    p.add_argument("--prompt-tokens", type=int, default=2000)
    p.add_argument("--gen", type=int, default=64)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--url", help="an already running server (then --kv is sent per request only)")
    p.add_argument("--label", default="rocketkv")
    p.add_argument("--binary", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release", "rocketkv"),
                   help="the rocketkv binary to start (default: this checkout's release build)")
    p.add_argument("--pid", type=int, help="pid of the --url server, for its peak resident memory")
    p.add_argument("--suppress-token", type=int, action="append", default=[],
                   help="token id sent with logit bias -100 (repeatable), for servers that ignore ignore_eos")
    p.add_argument("--cache-ram", type=int, default=0, help="the started server's --cache-ram in MB (default 0: nothing kept)")
    args = p.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    settings = args.kv or ["full"]
    offset = 0
    for setting in settings:
        method, _, budget = setting.partition(":")
        kv = {"method": method, **({"budget": int(budget)} if budget else {})}
        proc = None
        url = args.url
        if not url:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            proc = subprocess.Popen([args.binary, "serve", "--model", args.model, "--port", str(port), "--parallel", str(max(levels)),
                                     "--cache-ram", str(args.cache_ram)], stderr=subprocess.DEVNULL)
        try:
            wait_healthy(url, proc)
            model = httpx.get(url + "/v1/models").json()["data"][0]["id"]
            run_round(url, model, kv if not args.url or args.label == "rocketkv" else None, 1, argparse.Namespace(**{**vars(args), "gen": 4}), 10_000 + offset)
            for c in levels:
                offset += c
                row = run_round(url, model, kv if args.label == "rocketkv" else None, c, args, offset)
                row.update({"server": args.label, "kv": setting, "prompt_tokens": args.prompt_tokens, "gen": args.gen,
                            "server_peak_rss_bytes": rss_bytes(proc.pid if proc else args.pid),
                            "server_rss_bytes": rss_bytes(proc.pid if proc else args.pid, "VmRSS"), "cache_ram_mb": args.cache_ram,
                            "date": time.strftime("%Y-%m-%d %H:%M:%S")})
                print(json.dumps(row), flush=True)
        finally:
            if proc:
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()
