"""`rocketkv serve` through the official `openai` client (and raw HTTP for what a client must not send).

Run by `tests/server/run.sh` (from `.ci/run`), which starts the server on a free loopback port and passes
ROCKETKV_URL, ROCKETKV_PID, ROCKETKV_API_KEY, ROCKETKV_MODEL and ROCKETKV_BIN.
"""
import json
import os
import socket
import subprocess
import threading
import time
import unittest

import httpx
import openai

URL = os.environ["ROCKETKV_URL"]
PID = int(os.environ["ROCKETKV_PID"])
KEY = os.environ["ROCKETKV_API_KEY"]
MODEL = os.environ["ROCKETKV_MODEL"]
BIN = os.environ["ROCKETKV_BIN"]

client = openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0, timeout=300)
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def ask(content, **kw):
    return [{"role": "user", "content": content}]


def rss_mib(pid=PID):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def metric(name, text=None):
    text = text or httpx.get(URL + "/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_idle(timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = httpx.get(URL + "/metrics").text
        if metric("rocketkv_sequences_active", text) == 0 and metric("rocketkv_sequences_queued", text) == 0:
            return True
        time.sleep(0.2)
    return False


def post(path, body, headers=HEADERS):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(URL + path, content=data, headers=headers, timeout=120)


class Chat(unittest.TestCase):
    def test_health_and_models(self):
        self.assertEqual(httpx.get(URL + "/health").json(), {"status": "ok"})
        models = client.models.list()
        self.assertEqual([m.id for m in models.data], [MODEL])

    def test_non_streamed(self):
        r = client.chat.completions.create(model=MODEL, messages=ask("What is a rocket?"), max_tokens=16, temperature=0)
        self.assertEqual(r.object, "chat.completion")
        self.assertTrue(r.choices[0].message.content)
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)
        self.assertLessEqual(r.usage.completion_tokens, 16)

    def test_streamed_equals_non_streamed(self):
        messages = ask("Name three planets.")
        whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=24, temperature=0)
        stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=24, temperature=0,
                                                stream=True, stream_options={"include_usage": True})
        pieces, finish, usage = [], None, None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        self.assertEqual("".join(pieces), whole.choices[0].message.content)
        self.assertEqual(finish, whole.choices[0].finish_reason)
        self.assertEqual(usage.completion_tokens, whole.usage.completion_tokens)
        self.assertEqual(usage.prompt_tokens, whole.usage.prompt_tokens)

    def test_three_turns_report_cached_tokens(self):
        for kv in ({"method": "full"}, {"method": "rocket-mt", "budget": 64}):
            messages = [{"role": "user", "content": "My name is Ada. Say hello."}]
            cached = []
            for question in ("What is my name?", "Say it backwards."):
                r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=0, extra_body={"kv": kv})
                cached.append(r.usage.prompt_tokens_details.cached_tokens)
                messages += [{"role": "assistant", "content": r.choices[0].message.content}, {"role": "user", "content": question}]
            r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=0, extra_body={"kv": kv})
            cached.append(r.usage.prompt_tokens_details.cached_tokens)
            self.assertEqual(cached[0], 0, kv)
            self.assertGreater(cached[1], 20, kv)
            self.assertGreater(cached[2], cached[1], kv)
            self.assertLess(cached[2], r.usage.prompt_tokens, kv)

    def test_stop_string(self):
        messages = ask("Count from one to twenty in words, separated by commas.")
        free = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, temperature=0).choices[0].message.content
        self.assertGreater(len(free), 12, free)
        stop = free[len(free) // 2: len(free) // 2 + 3]
        r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, temperature=0, stop=[stop, "@@@"])
        self.assertEqual(r.choices[0].message.content, free[: free.index(stop)])
        self.assertEqual(r.choices[0].finish_reason, "stop")

    def test_completions(self):
        r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
        self.assertEqual(r.object, "text_completion")
        self.assertTrue(r.choices[0].text)
        streamed = "".join(c.choices[0].text for c in client.completions.create(
            model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True) if c.choices)
        self.assertEqual(streamed, r.choices[0].text)

    def test_seeded_sampling_is_reproducible(self):
        kw = dict(model=MODEL, messages=ask("Tell me a story."), max_tokens=16, temperature=0.9, top_p=0.9, seed=7)
        self.assertEqual(client.chat.completions.create(**kw).choices[0].message.content,
                         client.chat.completions.create(**kw).choices[0].message.content)

    def test_cancel_mid_stream(self):
        before = metric("rocketkv_completion_tokens_total")
        stream = client.chat.completions.create(model=MODEL, messages=ask("Write a very long essay about rockets."),
                                                max_tokens=3000, temperature=0, stream=True, extra_body={"kv": {"method": "rocket", "budget": 64}})
        for i, _ in enumerate(stream):
            if i == 5:
                break
        stream.close()
        self.assertTrue(wait_idle(20), "the cancelled sequence is still active")
        # It never finished, so it counted no completion tokens.
        self.assertEqual(metric("rocketkv_completion_tokens_total"), before)

    def test_disconnect_cancels_a_non_streamed_request(self):
        # A whole (non-streamed) reply is written only at the end: the server must still notice that the client
        # left and stop generating, not run 3,000 tokens for nobody.
        before = metric("rocketkv_completion_tokens_total")
        body = json.dumps({"model": MODEL, "messages": ask("Write a very long essay about rockets."), "max_tokens": 3000,
                           "temperature": 0, "ignore_eos": True}).encode()
        address = httpx.URL(URL)
        with socket.create_connection((address.host, address.port)) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            deadline = time.time() + 20
            while metric("rocketkv_sequences_active") == 0 and time.time() < deadline:
                time.sleep(0.05)
            self.assertEqual(metric("rocketkv_sequences_active"), 1, "the request never started")
        self.assertTrue(wait_idle(20), "the abandoned sequence is still active")
        self.assertEqual(metric("rocketkv_completion_tokens_total"), before)


class Errors(unittest.TestCase):
    def check(self, response, status, param=None, code=None):
        self.assertEqual(response.status_code, status, response.text)
        error = response.json()["error"]
        self.assertEqual(set(error), {"message", "type", "param", "code"})
        self.assertTrue(error["message"])
        if param:
            self.assertEqual(error["param"], param)
        if code:
            self.assertEqual(error["code"], code)

    def test_malformed_json(self):
        self.check(post("/v1/chat/completions", b'{"model": "x", "messages": ['), 400)

    def test_wrong_types(self):
        base = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        for field, value in [("max_tokens", "many"), ("temperature", "hot"), ("stream", 3), ("messages", "hi"), ("kv", 5), ("stop", 7)]:
            self.check(post("/v1/chat/completions", {**base, field: value}), 400, param=field)
        self.check(post("/v1/chat/completions", {**base, "temperature": 7}), 400, param="temperature")
        self.check(post("/v1/chat/completions", {**base, "max_tokens": -1}), 400, param="max_tokens")
        self.check(post("/v1/chat/completions", {"model": MODEL}), 400, param="messages")
        self.check(post("/v1/chat/completions", [1, 2]), 400)

    def test_prompt_longer_than_context(self):
        with self.assertRaises(openai.BadRequestError) as e:
            client.chat.completions.create(model=MODEL, messages=ask("rocket " * 9000), max_tokens=4)
        self.assertEqual(e.exception.code, "context_length_exceeded")

    def test_max_tokens_clamped_to_context(self):
        r = client.completions.create(model=MODEL, prompt="Hello", max_tokens=10**9, temperature=0,
                                      stop=["\n", "."], extra_body={"kv": {"method": "full"}})
        self.assertLessEqual(r.usage.total_tokens, 8192)

    def test_unknown_model_and_method(self):
        with self.assertRaises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-5", messages=ask("hi"), max_tokens=4)
        for kv in ({"method": "nope"}, {"method": "rocket"}, {"method": "rocket", "budget": 4}, {"method": "full", "options": {"x": 1}}):
            with self.assertRaises(openai.BadRequestError, msg=str(kv)):
                client.chat.completions.create(model=MODEL, messages=ask("hi"), max_tokens=4, extra_body={"kv": kv})

    def test_body_too_large(self):
        self.check(post("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x" * (2 << 20)}]}), 413)

    def test_bad_api_key(self):
        bad = openai.OpenAI(base_url=URL + "/v1", api_key="wrong", max_retries=0)
        with self.assertRaises(openai.AuthenticationError):
            bad.chat.completions.create(model=MODEL, messages=ask("hi"), max_tokens=4)
        self.check(httpx.post(URL + "/v1/chat/completions", json={}), 401)

    def test_garbage_never_breaks_the_server(self):
        bodies = [b"", b"null", b"[]", b"\xff\xfe\x00", b'{"messages": [{"role": "user", "content": null}], "max_tokens": 1e300}',
                  b'{"messages": [{"role": 1}]}', b'{"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}',
                  b'{"messages": [{"role": "user", "content": "hi"}], "seed": 99999999999999999999999}',
                  b'{"messages": [{"role": "user", "content": "hi"}], "kv": {"method": "rocket", "budget": 99999999}}',
                  b'{"messages": [{"role": "user", "content": "hi"}], "n": 3}',
                  b'{' * 100000]
        for body in bodies:
            for path in ("/v1/chat/completions", "/v1/completions"):
                r = post(path, body)
                self.assertGreaterEqual(r.status_code, 400, body[:60])
                self.assertLess(r.status_code, 500, (body[:60], r.text))
        self.assertEqual(httpx.get(URL + "/health").status_code, 200)


class QueueFull(unittest.TestCase):
    """A second server with one slot and no queue: a request while it is busy gets 429."""

    def test_queue_full(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([BIN, "serve", "--model", MODEL, "--port", str(port), "--parallel", "1", "--queue", "0"],
                                  stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    if httpx.get(url + "/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            busy = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
            stream = busy.chat.completions.create(model=MODEL, messages=ask("Write a long essay."), max_tokens=2000, stream=True)
            next(iter(stream))
            with self.assertRaises(openai.RateLimitError):
                busy.chat.completions.create(model=MODEL, messages=ask("hi"), max_tokens=4)
            stream.close()
        finally:
            server.terminate()
            server.wait(30)


class Load(unittest.TestCase):
    """16 concurrent clients, 3 requests each: every request completes, none is lost, memory comes back."""

    def test_sixteen_clients(self):
        client.chat.completions.create(model=MODEL, messages=ask("warm up"), max_tokens=4)
        self.assertTrue(wait_idle())
        idle = rss_mib()
        results, errors = [], []

        def worker(i):
            local = openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0, timeout=600)
            for j in range(3):
                try:
                    kv = {"method": "rocket", "budget": 64} if (i + j) % 2 else {"method": "full"}
                    r = local.chat.completions.create(model=MODEL, messages=ask(f"Client {i} request {j}: name a colour."),
                                                      max_tokens=16, temperature=0, extra_body={"kv": kv})
                    results.append((i, j, r.usage.completion_tokens))
                except Exception as e:  # noqa: BLE001 - every failure is reported
                    errors.append((i, j, repr(e)))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(sorted((i, j) for i, j, _ in results), [(i, j) for i in range(16) for j in range(3)])
        self.assertTrue(wait_idle())
        after = rss_mib()
        # Idle conversations may keep up to --cache-ram (64 MiB in CI) of KV memory; nothing else may stay.
        print(f"\nRSS idle {idle:.0f} MiB, after 48 requests {after:.0f} MiB", flush=True)
        self.assertLess(after, idle + 64 + 48)


if __name__ == "__main__":
    unittest.main(verbosity=2)
